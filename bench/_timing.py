"""Small timing helpers: best-of-N wall time, and commands in fresh processes."""

from __future__ import annotations

import compileall
import resource
import subprocess
import sys
import time
from collections.abc import Callable

from tests.shared_data import REPO_ROOT


def best_of(
    fn: Callable[[], object],
    repeat: int = 7,
    number: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The fastest of `repeat` runs of `number` calls, in seconds per call: wall time, or
    CPU time with `clock=time.process_time` (steadier on a shared machine)."""
    best = float("inf")
    for _ in range(repeat):
        start = clock()
        for _ in range(number):
            fn()
        best = min(best, (clock() - start) / number)
    return best


def fresh_process(code: str, repeat: int = 5) -> float:
    """Best wall time of `python -c code` in a new interpreter, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
        best = min(best, time.perf_counter() - start)
    return best


def fresh_process_cpu(code: str, repeat: int = 5) -> float:
    """Least CPU time (user + system) of `python -c code` in a new interpreter, in seconds:
    steadier than wall time on a shared machine."""
    best = float("inf")
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return best


def compile_sources() -> None:
    """Byte-compile the package as installing a wheel does, so that fresh-process timings
    compare like with like: the peers' site-packages are compiled, and an editable checkout
    under PYTHONDONTWRITEBYTECODE would otherwise compile every module in every process."""
    compileall.compile_dir(str(REPO_ROOT / "src"), quiet=1)


def fresh_process_output(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=REPO_ROOT, capture_output=True, text=True
    )
    return result.stdout.strip()


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"
