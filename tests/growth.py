"""Growth-ratio checks: does a function's time grow linearly with the size of its input?

Timings compare one input with the same input made `SCALE` times longer, side by side in one run,
so the machine's speed cancels out: linear code takes ~SCALE times longer, quadratic ~SCALE², and
catastrophic backtracking never finishes (a SIGALRM cuts a call that runs past `HANG_S`, which no
linear call on these sizes comes near). Noise on a shared machine only ever inflates a timing, so
each side is the fastest of a few runs, and a pair that looks super-linear in the quick screen is
measured again, longer, before it counts. Times are the thread's CPU time, which other processes
on a busy machine do not inflate as they do wall-clock time.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCALE = 8
# Linear code shows ~8x; quadratic shows ~64x. The margin absorbs a noisy, shared 2-core machine.
LIMIT = 3 * SCALE
HANG_S = 3.0


class _Hang(Exception):
    pass


def _alarm(*_: object) -> None:
    raise _Hang


def _best_of(call: Callable[[], Any], *, number: int, repeat: int) -> float:
    """Fastest of `repeat` runs of `number` calls, per call (inf when a run hangs).

    Call under `_alarm_handler()`, which turns SIGALRM into _Hang."""
    best = float("inf")
    for _ in range(repeat):
        signal.setitimer(signal.ITIMER_REAL, HANG_S * number)
        try:
            start = time.thread_time()
            for _ in range(number):
                call()
            best = min(best, (time.thread_time() - start) / number)
        except _Hang:
            return float("inf")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return best


@contextmanager
def _alarm_handler() -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _ratio(func: Callable[[Any], Any], small: Any, large: Any, *, careful: bool) -> float:
    if not careful:
        small_time = _best_of(lambda: func(small), number=1, repeat=2)
        return _best_of(lambda: func(large), number=1, repeat=1) / max(small_time, 1e-9)
    once = _best_of(lambda: func(small), number=1, repeat=1)
    number = max(1, min(10_000, int(0.002 / max(once, 1e-7))))
    small_time = _best_of(lambda: func(small), number=number, repeat=5)
    return _best_of(lambda: func(large), number=number, repeat=5) / max(small_time, 1e-9)


def ratio(func: Callable[[Any], Any], small: Any, large: Any, *, careful: bool = False) -> float:
    """time(func(large)) / time(func(small)); `careful` runs each side for ~2 ms, five times."""
    with _alarm_handler():
        return _ratio(func, small, large, careful=careful)


@dataclass(frozen=True)
class Case:
    """One function on one adversarial input, at two sizes (the large one SCALE times the small)."""

    name: str
    func: Callable[[Any], Any]
    small: Any
    large: Any


def super_linear(cases: Iterable[Case]) -> list[str]:
    """The cases whose time grows more than LIMIT times for SCALE times the input, with their ratio."""
    found = []
    with _alarm_handler():
        for case in cases:
            if _ratio(case.func, case.small, case.large, careful=False) > LIMIT:
                # Confirm with a longer measurement: the quick screen's single calls are noisy.
                confirmed = _ratio(case.func, case.small, case.large, careful=True)
                if confirmed > LIMIT:
                    found.append(f"{case.name}: {confirmed:.0f}x for {SCALE}x the input")
    return found


def pumped_pairs(
    prefixes: Iterable[str], pumps: Iterable[str], suffixes: Iterable[str], size: int
) -> list[tuple[str, str, str]]:
    """(label, small line, large line): `prefix + pump * k + suffix`, the pump repeated to about
    `size` characters in the small line and SCALE times as many in the large one.

    Classic attack strings for backtracking regexes: a prefix that lets the pattern start, a pump
    the pattern can match in many ways, and a suffix that makes the match fail at the very end."""
    pumps = list(pumps)
    suffixes = list(suffixes)
    out = []
    for prefix in prefixes:
        for pump in pumps:
            k = max(1, size // len(pump))
            for suffix in suffixes:
                label = f"{prefix!r} + {pump!r} * k + {suffix!r}"
                out.append((label, prefix + pump * k + suffix, prefix + pump * (k * SCALE) + suffix))
    return out
