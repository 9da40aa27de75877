"""The Parquet layout of exported resources: typed top-level columns, exact JSON columns,
`_extra` for the rest, and rows that rebuild the resource exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from pymedplum import _json
from pymedplum._parquet import ParquetTypeWriter, columns_for, resource_from_row

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

PATIENT = (
    b'{"resourceType":"Patient","id":"p1","meta":{"versionId":"v1",'
    b'"lastUpdated":"2026-11-21T05:04:22.159Z"},"active":true,"gender":"female",'
    b'"birthDate":"1990-01-02","_birthDate":{"extension":[{"url":"http://x","valueString":"a"}]},'
    b'"name":[{"family":"Smith","given":["Ann"]}],"multipleBirthInteger":2,'
    b'"futureElement":{"from":"a newer Medplum"}}'
)
ODD_PATIENT = b'{"resourceType":"Patient","id":"p2","active":"yes"}'  # not what FHIR says
OBSERVATION = (
    b'{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"},'
    b'"valueQuantity":{"value":1.50,"unit":"kg"},"component":[{"code":{"text":"a"},'
    b'"valueQuantity":{"value":12500.00}},{"code":{"text":"b"},'
    b'"valueQuantity":{"value":66.899999999999991}}]}'
)
CHARGE_ITEM = (
    b'{"resourceType":"ChargeItem","id":"c1","status":"billable","code":{"text":"x"},'
    b'"subject":{"reference":"Patient/p1"},"factorOverride":0.80}'
)


def canonical(resource: Any) -> bytes:
    """JSON text with sorted keys and decimals as written: equal only if nothing changed."""
    return orjson.dumps(resource, default=_json._default, option=orjson.OPT_SORT_KEYS)


def write(tmp_path: Path, resource_type: str, lines: list[bytes], **kw: Any) -> Path:
    path = tmp_path / f"{resource_type}.parquet"
    writer = ParquetTypeWriter(path, resource_type, **kw)
    for line in lines:
        writer.add(_json.loads(line))
    assert writer.close() == len(lines)
    return path


def test_top_level_primitives_are_typed_columns_and_the_rest_json(tmp_path: Path) -> None:
    schema = pq.read_schema(write(tmp_path, "Patient", [PATIENT]))
    assert schema.field("id").type == pa.utf8()
    assert schema.field("active").type == pa.bool_()
    assert schema.field("multipleBirthInteger").type == pa.int64()
    assert schema.field("birthDate").type == pa.utf8()  # partial dates: text, never widened
    assert schema.field("meta_lastUpdated").type == pa.timestamp("us", tz="UTC")
    for name in ("name", "meta", "contact", "_extra"):
        assert str(schema.field(name).type) in ("extension<arrow.json>", "string")


def test_the_schema_comes_from_the_definition_not_the_data(tmp_path: Path) -> None:
    schema = pq.read_schema(write(tmp_path, "Patient", [ODD_PATIENT]))
    names = schema.names
    # Every element of Patient is a column, even when no row has it (stable across exports).
    assert {"deceasedBoolean", "deceasedDateTime", "photo", "link"} <= set(names)
    assert len(names) == len(columns_for("Patient")) + 3  # meta_versionId, meta_lastUpdated, _extra


def test_rows_rebuild_every_resource_exactly(tmp_path: Path) -> None:
    cases = {
        "Patient": [PATIENT, ODD_PATIENT],
        "Observation": [OBSERVATION],
        "ChargeItem": [CHARGE_ITEM],
    }
    for resource_type, lines in cases.items():
        rows = pq.read_table(write(tmp_path, resource_type, lines)).to_pylist()
        rebuilt = [canonical(resource_from_row(row)) for row in rows]
        assert rebuilt == [canonical(_json.loads(line)) for line in lines]


def test_decimals_keep_their_digits_in_columns_and_json(tmp_path: Path) -> None:
    charge = pq.read_table(write(tmp_path, "ChargeItem", [CHARGE_ITEM])).to_pylist()[0]
    assert charge["factorOverride"] == "0.80"
    observation = pq.read_table(write(tmp_path, "Observation", [OBSERVATION])).to_pylist()[0]
    assert '"value":1.50' in observation["valueQuantity"]
    assert (
        "12500.00" in observation["component"] and "66.899999999999991" in observation["component"]
    )


def test_what_has_no_column_goes_to_extra(tmp_path: Path) -> None:
    rows = pq.read_table(write(tmp_path, "Patient", [PATIENT, ODD_PATIENT])).to_pylist()
    first, odd = (_json.loads(row["_extra"]) for row in rows)
    assert set(first) == {"_birthDate", "futureElement"}
    assert odd == {"active": "yes"} and rows[1]["active"] is None


def test_rows_are_written_in_batches(tmp_path: Path) -> None:
    lines = [PATIENT.replace(b'"p1"', f'"p{i}"'.encode()) for i in range(5)]
    parquet = pq.ParquetFile(write(tmp_path, "Patient", lines, batch_rows=2))
    assert parquet.metadata.num_rows == 5
    assert parquet.metadata.num_row_groups == 3


def test_an_aborted_writer_leaves_nothing(tmp_path: Path) -> None:
    writer = ParquetTypeWriter(tmp_path / "Patient.parquet", "Patient")
    writer.add(_json.loads(PATIENT))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_duckdb_reads_columns_and_json(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    path = write(tmp_path, "Patient", [PATIENT, ODD_PATIENT])
    rows = duckdb.sql(
        f"SELECT id, name->>'$[0].family' AS family, year(meta_lastUpdated) AS year "
        f"FROM '{path}' ORDER BY id"
    ).fetchall()
    assert rows == [("p1", "Smith", 2026), ("p2", None, None)]
