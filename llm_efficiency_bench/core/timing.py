"""Timing helpers: medians and spread over repetitions; speed claims are ratios within one run.

On CUDA, kernels run asynchronously: a host clock read right after a call measures the launch, not the
work. `DeviceClock` times CUDA devices with CUDA events recorded on the current stream (read after the
end event has completed) and CPUs with `time.perf_counter`; every timer here takes a `device`.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator


@dataclass
class Timing:
    """Summary of repeated timings in milliseconds."""

    median_ms: float
    p25_ms: float
    p75_ms: float
    n: int

    @property
    def iqr_ms(self) -> float:
        return self.p75_ms - self.p25_ms


def summarize(samples_ms: list[float]) -> Timing:
    if not samples_ms:
        raise ValueError("no timing samples")
    s = sorted(samples_ms)
    if len(s) >= 4:
        q = statistics.quantiles(s, n=4)
        p25, p75 = q[0], q[2]
    else:
        p25, p75 = s[0], s[-1]
    return Timing(statistics.median(s), p25, p75, len(s))


def is_cuda(device: Any) -> bool:
    return str(device).startswith("cuda")


class DeviceClock:
    """Marks and elapsed milliseconds on one device: CUDA events on CUDA, `perf_counter` elsewhere.

    `a = clock.mark(); work(); b = clock.mark(); clock.ms(a, b)`. On CUDA a mark is an event recorded on
    the current stream, so the interval is GPU time between the two points of the stream; `ms` waits for
    the end event. Marks are cheap and never synchronise, so a loop can mark every step and read later.
    """

    def __init__(self, device: Any = "cpu"):
        self.cuda = is_cuda(device)
        if self.cuda:
            import torch

            self._event = lambda: torch.cuda.Event(enable_timing=True)

    @property
    def kind(self) -> str:
        """What the timings are, for metric notes."""
        return "CUDA events" if self.cuda else "perf_counter"

    def mark(self) -> Any:
        if self.cuda:
            ev = self._event()
            ev.record()
            return ev
        return time.perf_counter()

    def ms(self, start: Any, end: Any) -> float:
        if self.cuda:
            end.synchronize()
            return float(start.elapsed_time(end))
        return (end - start) * 1e3

    def time(self, fn: Callable[[], object]) -> float:
        """Milliseconds one call of `fn` takes on this device (waits for its work on CUDA)."""
        a = self.mark()
        fn()
        return self.ms(a, self.mark())


class StreamerMarks:
    """A `generate(streamer=...)` that marks every put on `clock`: the prompt first, then each new token.

    transformers hands the streamer `next_tokens.cpu()`, so on CUDA each token is complete when its event
    is recorded; `marks.times[1]` is the first token (TTFT from a mark taken before `generate`).
    """

    def __init__(self, clock: DeviceClock) -> None:
        self.clock = clock
        self.times: list[Any] = []

    def put(self, value: Any) -> None:
        self.times.append(self.clock.mark())

    def end(self) -> None:
        pass


def time_call(fn: Callable[[], object], repeats: int, warmup: int = 1, device: Any = "cpu") -> Timing:
    """Time `fn` `repeats` times after `warmup` untimed calls (CUDA events when `device` is CUDA)."""
    clock = DeviceClock(device)
    for _ in range(warmup):
        fn()
    return summarize([clock.time(fn) for _ in range(repeats)])


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                     device: Any = "cpu") -> dict[str, Timing]:
    """Time several functions call by call in alternation (A, B, A, B, ...).

    A ratio of two blocks timed one after the other absorbs any drift of the machine between the blocks
    (another process, frequency changes); alternating makes both sides see the same conditions.
    """
    clock = DeviceClock(device)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            samples[k].append(clock.time(fn))
    return {k: summarize(v) for k, v in samples.items()}


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """`with stopwatch() as t: ...` then `t["s"]` holds the elapsed seconds."""
    box = {"s": 0.0}
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        box["s"] = time.perf_counter() - t0
