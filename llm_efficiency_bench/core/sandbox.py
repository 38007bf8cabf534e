"""Run a batch of untrusted Python programs isolated from the suite and from each other; trusted verdicts.

Containment, outermost first (what holds where, and what does not: `docs/sandbox.md`):

1. **bubblewrap** (`bwrap` >= 0.5, the Debian/Ubuntu package `bubblewrap`), one sandbox per batch: new
   user, PID, network, IPC, UTS and cgroup namespaces (`--unshare-all`; no network, not even loopback), all
   capabilities dropped, mapped to uid/gid 65534 with no further user namespaces; a root made of read-only
   binds of `/usr` (and `/bin`, `/lib*`), a few harmless `/etc` files, the Python installation and the
   runner script only, so the suite's files, home and caches are not even visible; `/`, `/dev` and `/proc`
   read-only, so the only writable places are two size-limited tmpfs mounts, `/tmp` and `/dev/shm`;
   `--clearenv` with PATH/HOME/LANG only; `--die-with-parent` and `--new-session`. A seccomp filter refuses
   ptrace, process_vm_readv/writev, kcmp, pidfd_getfd and prlimit on another process to every process in
   the sandbox. (The command line and the filter: `llm_efficiency_bench/core/sandbox_bwrap.py`.)
2. **The runner is PID 1** (`--as-pid-1`) and non-dumpable: no program can signal, stop, ptrace, read or
   write it, or open its descriptors through /proc. Its stdout is the batch's only result channel, and
   each program is forked with every descriptor but its own two pipes closed. The verdict of program i is
   the runner's, made after the child exited: passed needs exit status 0 *and* the echo of a per-program
   token that the runner draws after the fork and the harness reads only after `check()` returned; a
   program that writes "pass" or exits early fails (`llm_efficiency_bench/core/sandbox_runner.py`). When the batch ends
   or is killed, the PID namespace ends and every process in it with it.
3. **One program at a time, from a clean scratch space:** before each program, everything the previous
   one started is killed and `/tmp` and `/dev/shm` are wiped.
4. **Limits:** POSIX limits on the runner and on every program (RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE,
   RLIMIT_CPU), a wall-clock limit per program and per batch enforced with SIGKILL, and the process count
   of the batch bounded by a cgroup's `pids.max` where this process can create one (`process_bound`);
   the kernel does not apply RLIMIT_NPROC to root, so for a root caller without a writable pids cgroup
   only time and the kills bound a fork bomb.

The caller trusts a batch only when the runner wrote a result for every index, in order, and then its
end-of-batch line, and exited with status 0. Anything else (a duplicate, missing or out-of-range index, a
line that is not a result, a runner that stopped) and the batch is discarded: cut by the batch limit,
every program is "timed out"; otherwise each program is checked again in a sandbox of its own.

Without a working `bwrap` (missing, too old, or its self-test fails, e.g. user namespaces are blocked)
programs are not run unless the caller passes `allow_unsafe=True`; then only the limits, the kills and a
fresh work folder apply, with a cleared environment, and every result says "UNSAFE: not isolated".

Not guaranteed: a program written against the runner's protocol (read the token pipe, echo it, exit 0)
can pass itself, since it shares a process with the harness that runs `check()`; it cannot reach any other
verdict.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from llm_efficiency_bench.core.errors import ConfigError
# the sandbox's shape (Limits, bwrap_command, seccomp_filter, RUNNER stay importable from this module)
from llm_efficiency_bench.core.sandbox_bwrap import (ENV, NEEDED_OPTIONS, RUNNER, SECCOMP_FD_ARG, Limits, bwrap_command,
                                                     bwrap_options, seccomp_filter)

log = logging.getLogger(__name__)

ISOLATED = "bwrap"
UNSAFE = "UNSAFE: not isolated"
_GRACE_S = 10.0  # beyond the batch limit before the runner itself is killed

_USAGE: collections.Counter[str] = collections.Counter()  # programs run in this process, per isolation


def usage() -> dict[str, int]:
    """How many programs this process has run, per isolation (`bwrap`, "UNSAFE: not isolated").

    The runner stores the difference over one experiment in its record (`env.code_execution`).
    """
    return dict(_USAGE)



@functools.lru_cache(maxsize=None)
def isolation_problem() -> str | None:
    """Why programs cannot be isolated here (None when bubblewrap works): checked once per process.

    The self-test starts the real sandbox and checks that it cannot see the suite's files, cannot write
    outside its /tmp and has no network.
    """
    if shutil.which("bwrap") is None:
        return "bubblewrap (`bwrap`) is not installed (Debian/Ubuntu package `bubblewrap`)"
    missing = [o for o in NEEDED_OPTIONS if o not in bwrap_options()]
    if missing:
        return f"bubblewrap is too old (no {', '.join(missing)}; 0.5 or newer is needed)"
    probe = ("import os, socket\n"
             f"assert not os.path.exists({str(RUNNER)!r}), 'suite visible'\n"
             "try:\n    open('/usr/.bench_probe', 'w'); raise SystemExit('usr writable')\nexcept OSError: pass\n"
             "try:\n    socket.create_connection(('127.0.0.1', 9), timeout=1); raise SystemExit('network')\n"
             "except OSError: pass\n")
    try:
        res = _run_batch(bwrap_command(sys.executable, Limits()), [probe], 10.0, 30.0, Limits(), None)
    except (OSError, RuntimeError) as e:
        return f"bubblewrap fails its self-test ({e})"
    if res[0]["status"] != "passed":
        return f"bubblewrap fails its self-test ({res[0]['message']})"
    return None


_CGROUP_PREFIX = "bench-sandbox-"
_PID_HEADROOM = 3  # bubblewrap's outer process, the runner (PID 1 inside) and the program itself
_STATUSES = ("passed", "failed", "timed out", "error")


def _new_cgroup(root: Path, pids_max: int) -> Path:
    """A fresh pids cgroup under `root` with `pids.max`; removes empty ones left by dead suite processes."""
    for old in root.glob(_CGROUP_PREFIX + "*"):
        owner = old.name[len(_CGROUP_PREFIX):].split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            try:
                old.rmdir()
            except OSError:
                pass
    cg = root / f"{_CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    cg.mkdir()
    try:
        (cg / "pids.max").write_text(f"{pids_max}\n")  # no such file: the pids controller is not enabled here
    except OSError:
        cg.rmdir()
        raise
    return cg


def _remove_cgroup(cg: Path) -> None:
    """Kill whatever is still in the batch's cgroup (a backstop for the unsafe mode), then remove it."""
    for _ in range(250):
        try:
            for pid in (cg / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            cg.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY: the last processes are still exiting
            time.sleep(0.02)
    log.warning("could not remove the sandbox's cgroup %s", cg)


@functools.lru_cache(maxsize=None)
def pids_cgroup_root() -> Path | None:
    """A cgroup hierarchy with the pids controller where this process may create cgroups (None if none).

    cgroup v1 (`/sys/fs/cgroup/pids`), or v2 (`/sys/fs/cgroup`) with `pids` in its `subtree_control`;
    in practice this needs root, or a delegated hierarchy.
    """
    for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").is_file() and os.access(root, os.W_OK):
            try:
                _remove_cgroup(_new_cgroup(root, 8))
            except OSError:
                continue
            return root
    return None


def process_bound() -> str | None:
    """What bounds the number of processes of a program here, or None when nothing but time does.

    `cgroup pids.max` (one cgroup per batch, `pids_cgroup_root`); else `RLIMIT_NPROC`, which the kernel
    applies to every uid but root; for a root caller without a writable pids cgroup: None.
    """
    if pids_cgroup_root() is not None:
        return "cgroup pids.max"
    return "RLIMIT_NPROC" if os.getuid() != 0 else None


def _parse(out: bytes, n: int) -> tuple[list[dict[str, Any]] | None, str]:
    """The runner's results, strictly: lines for indices 0..n-1 in order, then `{"done": n}`, nothing else.

    Returns (results, "") for a complete batch, else (None, what was wrong).
    """
    results: list[dict[str, Any]] = []
    lines = out.decode("utf-8", "replace").splitlines()
    for k, line in enumerate(lines):
        try:
            r = json.loads(line)
        except ValueError:
            return None, f"line {k + 1} is not a result"
        if not isinstance(r, dict):
            return None, f"line {k + 1} is not a result"
        if set(r) == {"done"}:
            if r["done"] == n == len(results) and k == len(lines) - 1:
                return results, ""
            return None, f"end of batch after {len(results)} of {n} results"
        i = r.get("i")
        if type(i) is not int or i != len(results) or i >= n:
            return None, f"result index {i!r} where {len(results)} was due"
        if r.get("status") not in _STATUSES or not isinstance(r.get("message"), str) or len(r) != 3:
            return None, f"malformed result for program {i}"
        results.append({"status": r["status"], "message": r["message"]})
    return None, f"no end of batch after {len(results)} of {n} results"


def _run_once(cmd: list[str], programs: Sequence[str], timeout: float, batch_timeout: float, limits: Limits,
              workdir: str | None) -> tuple[list[dict[str, Any]] | None, bool, str]:
    """Start `cmd` (the runner) in a pids cgroup where one can be made, feed it the job, kill it at the
    limit. Returns (results or None when the batch is incomplete or malformed, cut by the limit?, why)."""
    job = json.dumps({"timeout": timeout, "batch_timeout": batch_timeout, "limits": asdict(limits),
                      "programs": list(programs), "workdir": workdir, "isolated": workdir is None})
    cg, root = None, pids_cgroup_root()
    if root is not None:
        try:
            cg = _new_cgroup(root, limits.nproc + _PID_HEADROOM)
        except OSError as e:
            log.warning("no pids cgroup for this batch (%s); the process count is not bounded", e)
    if cg is not None:  # the shell joins the cgroup, then becomes the runner: no preexec_fn needed
        cmd = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cg / "cgroup.procs"), *cmd]
    fds: tuple[int, ...] = ()
    if SECCOMP_FD_ARG in cmd:  # the filter goes to bubblewrap on a pipe (a few hundred bytes: never blocks)
        rfd, wfd = os.pipe()
        os.write(wfd, seccomp_filter() or b"")
        os.close(wfd)
        fds, cmd = (rfd,), [str(rfd) if a == SECCOMP_FD_ARG else a for a in cmd]
    # no preexec_fn (unsafe in the suite's multi-threaded process): the runner limits itself before any
    # program starts, and each program again (sandbox_runner.py)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(ENV), cwd=workdir or "/", start_new_session=True, pass_fds=fds)
    except BaseException:
        if cg is not None:
            _remove_cgroup(cg)
        raise
    finally:
        for fd in fds:
            os.close(fd)
    try:
        # the runner keeps to `batch_timeout` itself; this wait is the backstop for a runner that does not
        out, err = proc.communicate(job.encode(), timeout=batch_timeout + _GRACE_S)
        cut = False
    except subprocess.TimeoutExpired:
        cut = True
    finally:
        try:  # the whole group: bwrap (whose PID namespace then ends), or the unsafe runner's group
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if cg is not None:
            _remove_cgroup(cg)
    if cut:
        try:
            out, err = proc.communicate(timeout=5.0)
        except subprocess.TimeoutExpired:  # a pipe end held by a process outside the group (unsafe mode)
            out, err = b"", b""
            proc.stdout.close()
            proc.stderr.close()
            proc.wait()
    results, why = _parse(out, len(programs))
    if results is not None and proc.returncode != 0:
        results, why = None, "complete results but a failed runner"
    if results is None:
        why += f" (runner rc {proc.returncode}: {err.decode('utf-8', 'replace')[-300:].strip()})"
    return results, cut, why


def _run_batch(cmd: list[str], programs: Sequence[str], timeout: float, batch_timeout: float, limits: Limits,
               workdir: str | None) -> list[dict[str, Any]]:
    """One result per program, each written by the runner; a batch the runner did not complete is not
    trusted: cut by the limit, every program timed out; otherwise each program is checked again alone."""
    results, cut, why = _run_once(cmd, programs, timeout, batch_timeout, limits, workdir)
    if results is not None:
        return results
    if cut:
        return [{"status": "timed out", "message": f"timed out (batch limit {batch_timeout:g} s)"}
                for _ in programs]
    if len(programs) == 1:
        return [{"status": "error", "message": f"error: the sandbox runner did not complete: {why}"[:300]}]
    log.warning("the sandbox runner did not complete a batch of %d programs (%s); checking each alone",
                len(programs), why)
    return [r for p in programs for r in _run_batch(cmd, [p], timeout, timeout + 32.0, limits, workdir)]


def require_isolation(allow_unsafe: bool, unsafe_setting: str = "sandbox.allow_unsafe") -> str:
    """The mode programs will run in here (`ISOLATED` or `UNSAFE`); call early to fail before long work.

    Raises:
        ConfigError: naming `unsafe_setting`, when isolation is unavailable and `allow_unsafe` is false
            (or is not a boolean).
    """
    if not isinstance(allow_unsafe, bool):
        raise ConfigError(unsafe_setting, f"must be true or false, got {allow_unsafe!r}")
    problem = isolation_problem()
    if problem is None:
        return ISOLATED
    if not allow_unsafe:
        raise ConfigError(unsafe_setting, f"generated code is only run isolated, but {problem}; install bubblewrap "
                          "(it needs user namespaces, or root), or set "
                          f"{unsafe_setting}=true to run it UNSAFE, not isolated, on this machine")
    return UNSAFE


def run_programs(programs: Sequence[str], timeout: float = 3.0, batch_timeout: float | None = None, *,
                 limits: Limits = Limits(), allow_unsafe: bool = False,
                 unsafe_setting: str = "sandbox.allow_unsafe") -> list[dict[str, Any]]:
    """Run each program (Python source) once, isolated, with a time limit; one result per program.

    Args:
        programs: Python sources; a program passes when it runs to its end without an exception.
        timeout: wall-clock seconds per program (also its CPU limit, rounded up).
        batch_timeout: wall-clock seconds for the whole batch; default `(timeout + 2) * n + 30`.
        limits: POSIX limits per program.
        allow_unsafe: run without isolation when bubblewrap is unusable (POSIX limits and kills only).
        unsafe_setting: the setting that sets `allow_unsafe`, named in the error when isolation is missing.

    Returns:
        Dicts with `status` (passed, failed, timed out, error), `message` (at most ~300 characters) and
        `isolation` (`bwrap`, or "UNSAFE: not isolated").

    Raises:
        ConfigError: isolation is unavailable and `allow_unsafe` is false.
    """
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"the per-program time limit must be > 0 seconds, got {timeout}")
    mode = require_isolation(allow_unsafe, unsafe_setting)
    if not programs:
        return []
    limit = batch_timeout or (timeout + 2.0) * len(programs) + 30.0
    if mode == ISOLATED:
        res = _run_batch(bwrap_command(sys.executable, limits), programs, timeout, limit, limits, None)
        _USAGE[ISOLATED] += len(programs)
        return [{**r, "isolation": ISOLATED} for r in res]
    log.warning("%s: running %d generated programs without a sandbox (%s)", UNSAFE, len(programs),
                isolation_problem())
    with tempfile.TemporaryDirectory(prefix="bench-unsafe-") as work:
        res = _run_batch([sys.executable, "-I", str(RUNNER)], programs, timeout, limit, limits, work)
    _USAGE[UNSAFE] += len(programs)
    return [{**r, "isolation": UNSAFE} for r in res]
