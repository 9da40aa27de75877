"""make bench: every benchmark, as ratios against baselines measured in the same run.

python -m bench            all
python -m bench models     the model benchmarks only (also: client, bulk, scale, budget, otel)
python -m bench targets    the model targets only (issue 9: cold start, all validators, speed)
python -m bench typecheck  cold mypy and pyright runs on a user script
"""

from __future__ import annotations

import platform
import sys

from bench import models, typecheck
from bench._timing import ms, us


def _table(title: str, rows: list[tuple[str, str, str, str]]) -> str:
    lines = [
        f"### {title}",
        "",
        "| benchmark | pymedplum | against the baseline | peer |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


def _time(seconds: float) -> str:
    return ms(seconds) if seconds >= 1e-3 else us(seconds)


def _targets_table(rows: list[models.Target], rss_built_kb: int) -> str:
    lines = [
        "### Model targets (CPU time, ratios measured in this run)",
        "",
        "| measure | pymedplum | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for what, ours, baseline, name, limit in rows:
        ratio = ours / baseline
        met = "yes" if ratio <= limit else "no"
        lines.append(
            f"| {what} | {_time(ours)} | {name} {_time(baseline)} | {ratio:.2f}x | "
            f"at most {limit}x | {met} |"
        )
    rss = rss_built_kb / 1024
    met = "yes" if rss <= 150 else "no"
    lines.append(
        f"| RSS with every resource validator built | {rss:.0f} MB | | | at most 150 MB | {met} |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    which = set(argv) or {"models", "client", "bulk", "scale", "budget", "otel", "typecheck"}
    print(f"Python {platform.python_version()}, {platform.machine()}; best of several runs.\n")
    if "models" in which:
        print(_table("Models", models.synthea_bundle() + models.per_resource() + models.imports()))
        print(_table("JSON dicts (client responses)", models.json_dicts()))
    if "models" in which or "targets" in which:
        print(_targets_table(*models.targets()))
    if "client" in which:
        try:
            from bench import client
        except ImportError:
            print("(client benchmark not available)")
        else:
            print(_table("Client CPU time per call", client.rows()))
    if "bulk" in which:
        from bench import bulk

        print(_table("Bulk export", bulk.rows()))
    if "scale" in which:
        from bench import scale

        print(_table("At scale: prefetching pages, auto-batching reads", scale.rows()))
    if "budget" in which:
        from bench import budget

        print(_table("Shared RateLimit budget (pymedplum.redis)", budget.rows()))
    if "otel" in which:
        from bench import otel

        print(_table("OpenTelemetry tracing", otel.rows()))
    if "typecheck" in which:
        print(_table("Type checking (cold, no cache)", typecheck.rows()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
