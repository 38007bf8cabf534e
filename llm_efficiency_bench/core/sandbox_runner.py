"""In-sandbox batch runner: `python -I sandbox_runner.py < job.json` (started by `llm_efficiency_bench.core.sandbox`).

Runs inside the bubblewrap sandbox as its PID 1 (or, in the explicitly unsafe mode, in a child process
group of the suite) and imports nothing but the standard library: with `-I` it cannot see the suite's
packages, and the sandbox shows it only `/usr`, the interpreter and this file.

Protocol. Reads `{"timeout": s, "batch_timeout": s, "limits": {...}, "programs": [src, ...], ...}` from
stdin; writes one JSON line `{"i": index, "status": passed|failed|timed out|error, "message": str}` per
program, in order, as soon as that program has finished, then `{"done": n}`. A batch without that last
line (the runner stopped or was killed) is not trusted by the caller.

Why no program can write a verdict. The result channel is this process's stdout, and only this process
writes it: every program is forked with all inherited descriptors closed; the runner is non-dumpable, so
no program can open `/proc/1/fd/1`, read or write its memory, or ptrace it; and as the PID namespace's
init it cannot be killed or stopped from inside (the kernel drops such signals to an init). There is no
shared secret to steal: the verdict of program i is this runner's judgement of its child, made after the
child exited, from two things: the child's exit status, and a 16-byte token the runner draws after the
fork (so it is in no program's memory when the program starts) and sends on a pipe that the harness reads
only once `check()` has returned. Passed means: exit status 0 *and* the child echoed that exact token on
its own result pipe. Writing "pass" on the result pipe, exiting with status 0, or killing oneself before
the checks ran is a failure.

What stays possible: the program and the harness share one process, so a program written against this
protocol (read the token pipe itself, echo it, exit 0) passes itself. It reaches nothing beyond its own
verdict. Each program starts from an empty scratch space: `/tmp` and `/dev/shm` (size-limited tmpfs
mounts of the sandbox) are wiped before it starts, after everything the previous program left running
was killed; a scratch space that cannot be wiped stops the batch (the caller then checks each program
in a sandbox of its own).

Each program runs in its own forked process (own session and process group, POSIX limits, stdin, stdout
and stderr on /dev/null) and is stopped by a wall-clock deadline with SIGKILL to its whole process group,
so SIGALRM handlers and busy loops do not matter; RLIMIT_CPU is the backstop. Anything a program forks or
spawns, daemonised or not, is re-parented to this runner (PID 1, or a child subreaper in the unsafe mode)
and killed before the next program starts.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import stat
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_MAX_MESSAGE = 300
_TOKEN_BYTES = 16
_RESULT_FD, _TOKEN_FD = 3, 4  # the child's two pipes, after every other descriptor is closed
_SCRATCH = ("/tmp", "/dev/shm")  # the sandbox's writable places (each a size-limited tmpfs)


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


def _child(src: str, wfd: int, tfd: int, limits: dict, cpu_s: int) -> None:
    """Forked child: keep only its two pipes, set limits, run the program, report; never returns."""
    try:
        os.setsid()
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the runner killed at the batch limit takes it along
        # the two pipes to fixed numbers (through copies above them, so neither overwrites the other), then
        # everything else closed: the runner's result channel above all
        wfd, tfd = fcntl.fcntl(wfd, fcntl.F_DUPFD, 16), fcntl.fcntl(tfd, fcntl.F_DUPFD, 16)
        os.dup2(wfd, _RESULT_FD, inheritable=False)  # not passed on to what the program executes
        os.dup2(tfd, _TOKEN_FD, inheritable=False)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(_TOKEN_FD + 1, min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20))
        _set_limits(limits, cpu_s)
        code = compile(src, "program.py", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # noqa: S102 (the point)
        # the checks have returned: echo the runner's token (not in this process until now)
        token = os.read(_TOKEN_FD, _TOKEN_BYTES)
        os.write(_RESULT_FD, b"P" + token)
        os._exit(0)
    except MemoryError:
        msg = f"FMemoryError (memory limit {limits['memory_mb']} MB)"
    except BaseException as e:  # noqa: BLE001 (every failure of the program is a result, SystemExit included)
        text = str(e) if not isinstance(e, SystemExit) else f"exit code {e.code!r}"
        msg = f"F{type(e).__name__}: {text}" if text else f"F{type(e).__name__}"
    try:
        os.write(_RESULT_FD, msg[: _MAX_MESSAGE + 1].encode("utf-8", "replace"))
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
                stat_ = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(stat_[1]) == me:
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
    """SIGKILL every process below this one. Orphans come back here (init or subreaper): loop until none."""
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


def _tree(roots: list[str]) -> set[str]:
    """Every path under the scratch roots, not descending into other mounts (the interpreter may be bound
    under /tmp, e.g. a checkout in /tmp on CI; those paths are there before any program and stay)."""
    paths: set[str] = set()
    for root in roots:
        dev, stack = os.lstat(root).st_dev, [root]
        while stack:
            folder = stack.pop()
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                paths.add(path)
                st = os.lstat(path)
                if stat.S_ISDIR(st.st_mode) and st.st_dev == dev:
                    stack.append(path)
    return paths


def _unlock(func, path, _exc) -> None:  # noqa: ANN001 (shutil.rmtree's onerror signature)
    """rmtree's error hook: a program may have taken the permissions away from a folder; give them back."""
    for p in (os.path.dirname(path), path):
        try:
            if not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
        except OSError:
            pass
    try:
        func(path)
    except FileNotFoundError:
        pass


def _wipe(roots: list[str], keep: set[str]) -> bool:
    """Remove everything under the scratch roots that was not there at the start (`keep`), once nothing of
    the previous program runs any more; True when that worked."""
    try:
        stack = list(roots)
        while stack:
            folder = stack.pop()
            os.chmod(folder, 0o1777 if folder in _SCRATCH else 0o755)  # a program may have locked it
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if path in keep:
                    if os.path.isdir(path) and not os.path.islink(path) and not os.path.ismount(path):
                        stack.append(path)
                elif os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, onerror=_unlock)
                else:
                    os.unlink(path)
        return _tree(roots) <= keep
    except Exception:  # noqa: BLE001 (e.g. a tree too deep for rmtree: the caller rechecks each program alone)
        return False


def _collect(rfd: int, pid: int, timeout: float) -> tuple[bytes, int | None, bool]:
    """What the child wrote on its result pipe, its wait status (None if still running), timed out?"""
    deadline, data, status = time.monotonic() + timeout, b"", None
    while status is None:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, None, True
        # poll in short slices: a daemon the program left may hold the pipe open after the program exited
        if select.select([rfd], [], [], min(left, 0.05))[0]:
            chunk = os.read(rfd, 4096)
            data += chunk[: 4096 - len(data)]
            if chunk:
                continue
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
    while select.select([rfd], [], [], 0)[0]:  # what was written before the exit
        chunk = os.read(rfd, 4096)
        if not chunk:
            break
        data += chunk[: 4096 - len(data)]
    return data, status, False


def run_one(src: str, timeout: float, limits: dict, workdir: str) -> dict:
    """Fork, run `src` with a wall-clock deadline, kill what it left behind, return the runner's verdict."""
    os.makedirs(workdir)
    os.chdir(workdir)
    rfd, wfd = os.pipe()  # result: child -> runner
    tfd, tw = os.pipe()  # token: runner -> child, read by the harness after the checks
    pid = os.fork()
    if pid == 0:
        _child(src, wfd, tfd, limits, max(1, int(timeout + 0.999)))
    os.close(wfd)
    os.close(tfd)
    token = os.urandom(_TOKEN_BYTES)  # drawn after the fork: no program's memory holds it when it starts
    os.write(tw, token)  # 16 bytes fit the pipe buffer: never blocks
    os.close(tw)
    data, status, timed_out = _collect(rfd, pid, timeout)
    os.close(rfd)
    try:
        os.killpg(pid, signal.SIGKILL)  # the program's group (it may still run after closing the pipe)
    except (ProcessLookupError, PermissionError):
        pass
    if status is None:
        _, status = os.waitpid(pid, 0)
    _kill_all_descendants()
    os.chdir("/")
    exited_ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    if not timed_out and exited_ok and data == b"P" + token:
        return {"status": "passed", "message": "passed"}
    if not timed_out and data.startswith(b"F") and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1:
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
    # an init gets only the signals it handles: none (Python's SIGINT handler would let a program stop it)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _prctl(_PR_SET_DUMPABLE, 0)  # no /proc/<runner>/fd, /proc/<runner>/mem or ptrace for the programs
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # (as PID 1 it reaps orphans anyway; the unsafe mode needs this)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the unsafe mode has no --die-with-parent
    # the result channel moves to a descriptor of its own; fd 1 becomes /dev/null
    out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    roots = list(_SCRATCH) if job.get("isolated") else [os.path.abspath(job["workdir"])]
    # what is there before any program stays (interpreter binds under /tmp); the unsafe mode's folder is the
    # caller's own and starts empty every time
    programs, n, keep = job.pop("programs"), 0, _tree(roots) if job.get("isolated") else set()
    batch_deadline = time.monotonic() + float(job["batch_timeout"])
    for i, src in enumerate(programs):
        if not _wipe(roots, keep):
            sys.exit("a scratch space could not be wiped; the batch stops")
        left = batch_deadline - time.monotonic()
        try:
            if left <= 0:
                res = {"status": "timed out", "message": f"timed out (batch limit {job['batch_timeout']:g} s)"}
            else:
                res = run_one(src, min(float(job["timeout"]), left), job["limits"], os.path.join(roots[0], f"p{i}"))
        except Exception as e:  # noqa: BLE001 (the runner's own failure is reported per program)
            res = {"status": "error", "message": f"error: {type(e).__name__}: {e}"[:_MAX_MESSAGE]}
        out.write(json.dumps({"i": i, **res}) + "\n")
        out.flush()
        n += 1
    out.write(json.dumps({"done": n}) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
