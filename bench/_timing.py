"""Small timing helpers: best-of-N wall time, and commands in fresh processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

from tests.shared_data import REPO_ROOT


def best_of(fn: Callable[[], object], repeat: int = 7, number: int = 1) -> float:
    """The fastest of `repeat` runs of `number` calls, in seconds per call."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def fresh_process(code: str, repeat: int = 5) -> float:
    """Best wall time of `python -c code` in a new interpreter, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
        best = min(best, time.perf_counter() - start)
    return best


def fresh_process_output(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=REPO_ROOT, capture_output=True, text=True
    )
    return result.stdout.strip()


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"
