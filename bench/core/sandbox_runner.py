"""In-sandbox batch runner: `python -I sandbox_runner.py < job.json` (started by `bench.core.sandbox`).

Runs inside the bubblewrap sandbox (or, in the explicitly unsafe mode, in a child process group of the
suite) and imports nothing but the standard library: with `-I` it cannot see the suite's packages, and the
sandbox shows it only `/usr`, the interpreter and this file.

Reads `{"nonce": str, "timeout": s, "limits": {...}, "programs": [src, ...]}` from stdin and prints one line
`<nonce> <json>` per program, `{"i": index, "status": passed|failed|timed out|error, "message": str}`, as
soon as that program has finished, so a batch cut short by its wall-clock limit still reports the finished
programs. Each program runs in its own forked process (own session and process group, POSIX limits,
stdin/stdout/stderr on /dev/null, a fresh work folder) and is stopped by a wall-clock deadline with
SIGKILL to its whole process group, so SIGALRM handlers and busy loops do not matter; RLIMIT_CPU is the
backstop. This runner is a child subreaper (`PR_SET_CHILD_SUBREAPER`): anything a program forks or spawns,
daemonised or not, is re-parented here and killed before the next program starts. The runner is
non-dumpable, so a program cannot open `/proc/<runner>/fd/1` to write forged result lines (the nonce is a
second guard: lines without it are ignored).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_MAX_MESSAGE = 300


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc prctl (not Linux): the /proc sweep below still runs
        return False


def _set_limits(limits: dict, cpu_s: int, extra_mb: int = 0, extra_procs: int = 0) -> None:
    """POSIX limits (address space, processes, file size, CPU seconds): per program, or with `extra_*`
    headroom for the runner itself."""
    mb = 1024 * 1024
    for res, soft in ((resource.RLIMIT_AS, (limits["memory_mb"] + extra_mb) * mb),
                      (resource.RLIMIT_FSIZE, limits["fsize_mb"] * mb),
                      (resource.RLIMIT_NPROC, limits["nproc"] + extra_procs), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (soft, soft))
    # soft limit: SIGXCPU; one second later the hard limit sends SIGKILL (for a program that ignores SIGXCPU)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))


def _child(src: str, wfd: int, limits: dict, cpu_s: int) -> None:
    """Forked child: isolate fds and limits, run the program, report on `wfd`; never returns."""
    try:
        os.setsid()
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the runner killed at the batch limit takes it along
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, wfd)
        os.closerange(wfd + 1, min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20))
        _set_limits(limits, cpu_s)
        code = compile(src, "program.py", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # noqa: S102 (the point)
        os.write(wfd, b"P")
        os._exit(0)
    except MemoryError:
        msg = f"FMemoryError (memory limit {limits['memory_mb']} MB)"
    except BaseException as e:  # noqa: BLE001 (every failure of the program is a result, SystemExit included)
        text = str(e) if not isinstance(e, SystemExit) else f"exit code {e.code!r}"
        msg = f"F{type(e).__name__}: {text}" if text else f"F{type(e).__name__}"
    try:
        os.write(wfd, msg[: _MAX_MESSAGE + 1].encode("utf-8", "replace"))
    finally:
        os._exit(1)


def _user_processes() -> int:
    """Processes of this real uid machine-wide: what RLIMIT_NPROC counts outside a user namespace."""
    uid, n = os.getuid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                n += os.stat(f"/proc/{name}").st_uid == uid
            except OSError:
                pass
    return n


def _children() -> list[int]:
    """Live direct children of this process (a /proc scan; zombies are reaped by the caller)."""
    me, out = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == me:
            out.append(int(name))
    return out


def _reap() -> bool:
    """Reap exited children; True when no child is left at all."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def _kill_all_descendants() -> None:
    """SIGKILL every process below this one. As subreaper, orphans come back here, so loop until none."""
    for _ in range(200):
        if _reap():
            return
        for pid in _children():
            for kill in (lambda p: os.killpg(p, signal.SIGKILL), lambda p: os.kill(p, signal.SIGKILL)):
                try:
                    kill(pid)
                except (ProcessLookupError, PermissionError):
                    pass
        time.sleep(0.005)
    raise RuntimeError("processes left by a program could not be stopped")


def run_one(src: str, timeout: float, limits: dict, workdir: str) -> dict:
    """Fork, run `src` with a wall-clock deadline, kill what it left behind, return its result."""
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _child(src, wfd, limits, max(1, int(timeout + 0.999)))
    os.close(wfd)
    deadline, data, timed_out, status = time.monotonic() + timeout, b"", False, None
    while status is None:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        # poll in short slices: a daemon the program left may hold the pipe open after the program exited
        if select.select([rfd], [], [], min(left, 0.05))[0]:
            chunk = os.read(rfd, 4096)
            data += chunk[: 4096 - len(data)]
            if chunk:
                continue
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
    while status is not None and select.select([rfd], [], [], 0)[0]:  # what was written before the exit
        chunk = os.read(rfd, 4096)
        if not chunk:
            break
        data += chunk[: 4096 - len(data)]
    os.close(rfd)
    try:
        os.killpg(pid, signal.SIGKILL)  # the program's group (it may still run after closing the pipe)
    except (ProcessLookupError, PermissionError):
        pass
    if status is None:
        _, status = os.waitpid(pid, 0)
    _kill_all_descendants()
    os.chdir("/")
    shutil.rmtree(workdir, ignore_errors=True)
    if data.startswith(b"P"):
        return {"status": "passed", "message": "passed"}
    if data.startswith(b"F"):
        return {"status": "failed", "message": "failed: " + data[1:].decode("utf-8", "replace")[:_MAX_MESSAGE]}
    if timed_out or (os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL)):
        return {"status": "timed out", "message": "timed out"}
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    return {"status": "failed", "message": f"failed: program exited before its checks finished (status {code})"}


def main() -> None:
    job = json.loads(sys.stdin.read())
    if not job.get("isolated"):  # no user namespace: RLIMIT_NPROC counts the user's other processes too
        job["limits"]["nproc"] += _user_processes()
    _set_limits(job["limits"], int(job["batch_timeout"]) + 15, extra_mb=512, extra_procs=16)
    _prctl(_PR_SET_DUMPABLE, 0)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    base = os.path.abspath(job.get("workdir") or os.getcwd())
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the unsafe mode has no --die-with-parent
    out = os.fdopen(os.dup(1), "w")
    batch_deadline = time.monotonic() + float(job["batch_timeout"])
    for i, src in enumerate(job["programs"]):
        left = batch_deadline - time.monotonic()
        try:
            if left <= 0:
                res = {"status": "timed out", "message": f"timed out (batch limit {job['batch_timeout']:g} s)"}
            else:
                res = run_one(src, min(float(job["timeout"]), left), job["limits"], os.path.join(base, f"p{i}"))
        except Exception as e:  # noqa: BLE001 (the runner's own failure is reported per program)
            res = {"status": "error", "message": f"error: {type(e).__name__}: {e}"[:_MAX_MESSAGE]}
        out.write(f"{job['nonce']} {json.dumps({'i': i, **res})}\n")
        out.flush()


if __name__ == "__main__":
    main()
