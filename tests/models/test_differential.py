"""Our models against Medplum's own validator, on the shared examples and a few thousand
mutations of them: every disagreement must be a documented category
(tests/models/differential.py, docs/models.md)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pymedplum.testing.local_server import _node_command, ensure_installed
from tests.models.differential import (
    BASES,
    CATEGORIES,
    MUTATIONS,
    PER_BASE,
    Case,
    Report,
    cases_from,
    default_files,
    describe,
    run,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"


@pytest.fixture(scope="module")
def report() -> Report:
    ensure_installed()
    return run(cases_from(default_files(), bases=BASES, per_base=PER_BASE), _node_command())


def _mutation(case: Case) -> str:
    return case.label.split(" ~ ", 1)[1].split(" @ ", 1)[0] if " ~ " in case.label else ""


def test_every_disagreement_with_medplum_is_a_known_category(report: Report) -> None:
    assert not report.unexplained, "\n".join(describe(c) for c in report.unexplained[:30])


def test_the_corpus_holds_the_examples_and_every_kind_of_mutation(report: Report) -> None:
    kinds = Counter(_mutation(c) for c in report.cases)
    assert kinds[""] >= 400  # the example files themselves
    assert sum(kinds.values()) >= 3000
    assert set(kinds) - {""} == {name for name, _ in MUTATIONS}
    assert report.agreements["both accept"] > 0 and report.agreements["both reject"] > 0


def test_we_accept_what_medplum_stores_and_fhir_allows(report: Report) -> None:
    """The relaxation and the XML Schema spaces: a dateTime without a zone, and a no-break
    space in a string, are accepted by both; an instant without a zone, or a document
    without its resourceType, by neither."""
    accepted_by_both = {c.label for c in report.cases if c.ours_ok and c.medplum_ok}
    checked: Counter[str] = Counter()
    for case in report.cases:
        kind = _mutation(case)
        if case.base not in accepted_by_both:
            continue
        if kind == "dateTime/instant without a zone":
            expected = "(dateTime)" in case.label
        elif kind in ("no-break space", "other Unicode space in a string"):
            if not case.label.endswith(("(string)", "(markdown)")):
                continue
            expected = True
        elif kind == "no resourceType":
            expected = False
        else:
            continue
        checked[kind] += 1
        assert case.ours_ok == expected, describe(case)
        # Medplum agrees, unless the change broke one of its FHIRPath invariants.
        invariants_only = case.medplum and all(p.kind == "invariant" for p in case.medplum)
        assert case.medplum_ok == expected or invariants_only, describe(case)
    assert len(checked) == 4 and min(checked.values()) >= 10, checked


def test_every_category_is_documented() -> None:
    text = DOCS.read_text()
    for category in CATEGORIES:
        assert f"| {category.name} |" in text, category.name
