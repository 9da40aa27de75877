"""Generate the sync client (src/pymedplum/_sync/) from the async one (src/pymedplum/_async/).

    python -m codegen.unasync           write the sync tree
    python -m codegen.unasync --check   fail if the sync tree differs in any byte or file

The source is tokenized; code tokens are rewritten by exact name rules (`async` and
`await` dropped with the space after them, `async_sleep` -> `sync_sleep`, ...) and strings
and comments by word rules, so docstrings read right in both clients. Spans between
tokens are copied untouched, so layout is preserved. A rule that no file used fails
the run: a stale rule means the source changed shape without the rules noticing.
The result goes through `ruff format` (shorter names can let wrapped lines join).

What only the async client has (auto-batching) is marked in the source and left out
of the sync twin: a line ending with the comment `# async-only` is dropped, with the
block it opens when it ends with `:`; a docstring line ending with `(async client only)`
is dropped too.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tokenize
from collections import Counter
from pathlib import Path

from codegen.formatting import format_files

__all__ = ["render", "check", "write", "NAME_RULES", "TEXT_RULES"]

SOURCE_DIR = Path("src/pymedplum/_async")
TARGET_DIR = Path("src/pymedplum/_sync")

# Keywords removed from code, with the whitespace that follows them.
DROPPED = ("async", "await")

# Exact NAME-token renames in code.
NAME_RULES: dict[str, str] = {
    "AsyncMedplumClient": "MedplumClient",
    "AsyncClient": "Client",
    "AsyncPrefetch": "SyncPrefetch",
    "async_sleep": "sync_sleep",
    "async_wait": "sync_wait",
    "ASYNC_WAIT_BLOCKS": "SYNC_WAIT_BLOCKS",
    "new_async_http_client": "new_sync_http_client",
    "run_before_request_async": "run_before_request",
    "run_complete_async": "run_complete",
    "ASYNC_HOOKS_ALLOWED": "SYNC_HOOKS_ONLY",
    "AsyncIterator": "Iterator",
    "AsyncGenerator": "Generator",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "aclose": "close",
    "aiter_bytes": "iter_bytes",
    "asynccontextmanager": "contextmanager",
    "aclosing": "closing",
    "async_search": "sync_search",
    "_async": "_sync",
    # A shared token cache and a rate-limit budget offer both variants of each step.
    "acquire_async": "acquire",
    "extend_async": "extend",
    "publish_async": "publish",
    "release_async": "release",
    "spent_until_async": "spent_until",
    "record_spent_async": "record_spent",
}

# Any other name `Async<Capitalized>` (our class names) loses its prefix.
ASYNC_CLASS_RULE = r"Async[A-Z]\w*"
_ASYNC_CLASS = re.compile(ASYNC_CLASS_RULE + "$")

# Lines of code, and of docstrings, that the sync twin leaves out.
ASYNC_ONLY_RULE = "# async-only"
_ASYNC_ONLY_LINE = re.compile(r"#\s*async-only\s*$")
ASYNC_ONLY_TEXT = r"\n[^\n]*\(async client only\)[ \t]*(?=\n)"

# Word rewrites inside strings and comments (docstrings, examples).
TEXT_RULES: tuple[tuple[str, str], ...] = (
    (ASYNC_ONLY_TEXT, ""),
    (r"\bawait ", ""),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bAsyncMedplumClient\b", "MedplumClient"),
    (r"\bhttpx\.AsyncClient\b", "httpx.Client"),
)
_TEXT_PATTERNS = tuple((re.compile(p), p, r) for p, r in TEXT_RULES)


def _header(source: Path) -> str:
    return f"# Generated from {source.as_posix()} by codegen/unasync.py: run `make generate`.\n"


def _rewrite_text(text: str, used: Counter[str]) -> str:
    for pattern, key, replacement in _TEXT_PATTERNS:
        text, count = pattern.subn(replacement, text)
        used[key] += count
    return text


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def drop_async_only(source: str, used: Counter[str]) -> str:
    """`source` without its lines marked `# async-only` (and the blocks they open)."""
    lines = source.splitlines(keepends=True)
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not _ASYNC_ONLY_LINE.search(line):
            kept.append(line)
            continue
        used[ASYNC_ONLY_RULE] += 1
        if line.split("#", 1)[0].rstrip().endswith(":"):
            body_end = index
            while body_end < len(lines) and (
                not lines[body_end].strip() or _indent(lines[body_end]) > _indent(line)
            ):
                body_end += 1
            while body_end > index and not lines[body_end - 1].strip():
                body_end -= 1  # blank lines after the block belong to what follows
            index = body_end
    return "".join(kept)


def unasync_source(source: str, used: Counter[str]) -> str:
    """The sync twin of one async module's source text."""
    source = drop_async_only(source, used)
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(position: tuple[int, int]) -> int:
        row, col = position
        return starts[row - 1] + col if row - 1 < len(starts) else len(source)

    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    edits: list[tuple[int, int, str]] = []
    for index, token in enumerate(tokens):
        start, end = offset(token.start), offset(token.end)
        if token.type == tokenize.NAME and token.string in DROPPED:
            following = tokens[index + 1]
            edits.append((start, offset(following.start), ""))
            used[token.string] += 1
        elif token.type == tokenize.NAME and token.string in NAME_RULES:
            edits.append((start, end, NAME_RULES[token.string]))
            used[token.string] += 1
        elif token.type == tokenize.NAME and _ASYNC_CLASS.match(token.string):
            # Our async classes (AsyncBotMethods, ...) are named like their sync twins.
            edits.append((start, end, token.string.removeprefix("Async")))
            used[ASYNC_CLASS_RULE] += 1
        elif token.type in (tokenize.STRING, tokenize.COMMENT):
            rewritten = _rewrite_text(token.string, used)
            if rewritten != token.string:
                edits.append((start, end, rewritten))
    out: list[str] = []
    cursor = 0
    for start, end, text in edits:
        out.append(source[cursor:start])
        out.append(text)
        cursor = end
    out.append(source[cursor:])
    return "".join(out)


def _format(text: str, filename: str) -> str:
    return format_files({filename: text})[filename]


def render(repo_root: Path) -> dict[str, str]:
    """{repo-relative path: content} of every generated sync file, formatted by ruff.

    Raises RuntimeError when a rule was never used.
    """
    used: Counter[str] = Counter()
    rendered: dict[str, str] = {}
    for path in sorted((repo_root / SOURCE_DIR).glob("*.py")):
        source_rel = path.relative_to(repo_root)
        target_rel = TARGET_DIR / path.name
        body = unasync_source(path.read_text(encoding="utf-8"), used)
        text = _header(source_rel) + body
        rendered[target_rel.as_posix()] = _format(text, target_rel.as_posix())
    unused = (
        [k for k in DROPPED if not used[k]]
        + [k for k in NAME_RULES if not used[k]]
        + [k for k in (ASYNC_CLASS_RULE, ASYNC_ONLY_RULE) if not used[k]]
        + [k for k, _ in TEXT_RULES if not used[k]]
    )
    if unused:
        raise RuntimeError(f"unasync rules never used (remove or fix them): {unused}")
    return rendered


def _existing(repo_root: Path) -> dict[str, str]:
    target = repo_root / TARGET_DIR
    if not target.is_dir():
        return {}
    return {
        p.relative_to(repo_root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(target.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def check(repo_root: Path) -> list[str]:
    """Problems with the sync tree: changed, missing and extra files (empty when in sync)."""
    expected, actual = render(repo_root), _existing(repo_root)
    problems = [f"missing: {p}" for p in sorted(expected.keys() - actual.keys())]
    problems += [f"extra: {p}" for p in sorted(actual.keys() - expected.keys())]
    problems += [
        f"changed: {p}" for p in sorted(expected.keys() & actual.keys()) if expected[p] != actual[p]
    ]
    return problems


def write(repo_root: Path) -> list[str]:
    """Write the sync tree, deleting files it no longer has; the paths written."""
    expected = render(repo_root)
    for stale in _existing(repo_root).keys() - expected.keys():
        (repo_root / stale).unlink()
    for rel, content in expected.items():
        target = repo_root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != content:
            target.write_text(content, encoding="utf-8")
    return sorted(expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codegen.unasync", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    if args.check:
        problems = check(root)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("the sync client is out of date: run `make generate`", file=sys.stderr)
            return 1
        return 0
    for rel in write(root):
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
