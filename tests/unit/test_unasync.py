"""The sync client is generated from the async one, byte for byte, by rules that all apply."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from codegen import unasync

ROOT = Path(__file__).resolve().parents[2]


def test_sync_tree_matches_the_generator() -> None:
    assert unasync.check(ROOT) == []


def test_every_generated_file_starts_with_the_marker() -> None:
    for path, content in unasync.render(ROOT).items():
        first = content.splitlines()[0]
        assert first.startswith("# Generated from src/pymedplum/_async/"), path
        assert "make generate" in first and len(first) <= 100


def test_render_is_deterministic() -> None:
    assert unasync.render(ROOT) == unasync.render(ROOT)


def test_rules_rewrite_code_strings_and_comments() -> None:
    source = (
        "async def f(c: httpx.AsyncClient) -> None:\n"
        '    """Use `async with AsyncMedplumClient()` and `await x`."""\n'
        "    async with c:  # await inside\n"
        "        await _backend.async_sleep(1)\n"
        "        x = 'async_sleep'\n"
    )
    out = unasync.unasync_source(source, Counter())
    assert out == (
        "def f(c: httpx.Client) -> None:\n"
        '    """Use `with MedplumClient()` and `x`."""\n'
        "    with c:  # inside\n"
        "        _backend.sync_sleep(1)\n"
        "        x = 'async_sleep'\n"
    )


def test_an_unused_rule_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(unasync.NAME_RULES, "NeverSeenName", "X")
    with pytest.raises(RuntimeError, match="NeverSeenName"):
        unasync.render(ROOT)


def test_check_reports_changed_missing_and_extra(tmp_path: Path) -> None:
    (tmp_path / "src/pymedplum").mkdir(parents=True)
    source = ROOT / "src/pymedplum/_async"
    target = tmp_path / "src/pymedplum/_async"
    target.mkdir()
    for path in source.glob("*.py"):
        (target / path.name).write_text(path.read_text())
    unasync.write(tmp_path)
    assert unasync.check(tmp_path) == []
    sync = tmp_path / "src/pymedplum/_sync"
    (sync / "client.py").write_text((sync / "client.py").read_text() + "\n")
    (sync / "__init__.py").unlink()
    (sync / "stray.py").write_text("")
    assert unasync.check(tmp_path) == [
        "missing: src/pymedplum/_sync/__init__.py",
        "extra: src/pymedplum/_sync/stray.py",
        "changed: src/pymedplum/_sync/client.py",
    ]


def test_command_line_check_passes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "codegen.unasync", "--check"], cwd=ROOT, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()


def test_async_only_lines_blocks_and_docstring_lines_are_left_out_of_the_sync_twin() -> None:
    source = (
        "class C:\n"
        '    """Args:\n'
        "        a: kept.\n"
        "        b: gathered reads (async client only)\n"
        '    """\n'
        "\n"
        "    def __init__(self, a: int, b: int = 0) -> None:  # async-only\n"
        "        self.b = b\n"
        "\n"
        "    def __init__(self, a: int) -> None:\n"
        "        self.a = a\n"
        "        if self.a:  # async-only\n"
        "            self.x = 1\n"
        "\n"
        "            self.y = 2\n"
        "        self.z = 3\n"
        "\n"
        "    async def f(self) -> None:\n"
        "        await g()  # async-only\n"
        "        await h()\n"
    )
    used: Counter[str] = Counter()
    assert unasync.unasync_source(source, used) == (
        "class C:\n"
        '    """Args:\n'
        "        a: kept.\n"
        '    """\n'
        "\n"
        "\n"  # the blank lines around a dropped block stay (ruff format tidies them)
        "    def __init__(self, a: int) -> None:\n"
        "        self.a = a\n"
        "        self.z = 3\n"
        "\n"
        "    def f(self) -> None:\n"
        "        h()\n"
    )
    assert used[unasync.ASYNC_ONLY_RULE] == 3
    assert used[unasync.ASYNC_ONLY_TEXT] == 1
