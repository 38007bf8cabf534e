"""The sandbox's shape: its limits, and the bubblewrap command line and seccomp filter that build it.

`llm_efficiency_bench.core.sandbox` runs batches in it (containment as a whole: its docstring and
`docs/sandbox.md`); this module only says what the sandbox is made of: which namespaces, which read-only
binds (`/usr`, a few `/etc` files, the interpreter, the runner), which size-limited writable mounts, and
which system calls every process in it is refused.
"""

from __future__ import annotations

import functools
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RUNNER = Path(__file__).with_name("sandbox_runner.py")
_IN_SANDBOX_RUNNER = "/sandbox/runner.py"
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}  # the whole environment of a program
NEEDED_OPTIONS = ("--as-pid-1", "--size", "--perms", "--remount-ro")  # bubblewrap 0.5 or newer
# Non-secret files a Python program may need: the dynamic loader's cache (ctypes, extension modules),
# the time zone, user names, and the alternatives links some /usr/bin entries point through.
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "alternatives")


@dataclass(frozen=True)
class Limits:
    """POSIX limits for each program (and, except CPU, for the whole batch).

    Attributes:
        memory_mb: address space per process (RLIMIT_AS).
        nproc: processes of one program: the batch's cgroup `pids.max` where the suite can create one
            (`sandbox.process_bound`), and RLIMIT_NPROC (which the kernel does not apply to root).
        fsize_mb: largest file a program may write (RLIMIT_FSIZE).
        tmpfs_mb: size of the sandbox's writable /tmp.
        shm_mb: size of the sandbox's /dev/shm (POSIX shared memory, multiprocessing's semaphores).
    """

    memory_mb: int = 1024
    nproc: int = 128
    fsize_mb: int = 16
    tmpfs_mb: int = 64
    shm_mb: int = 16


# seccomp (Linux `struct seccomp_data`, classic BPF): calls by which one process reaches into another of
# the same uid, per architecture: (AUDIT_ARCH, {name: number}). The kernel's non-dumpable check already
# refuses the first four to the runner; the filter makes that hold for every process of the sandbox.
_SYSCALLS = {
    "x86_64": (0xC000003E, {"ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
                            "pidfd_getfd": 438, "prlimit64": 302}),
    "aarch64": (0xC00000B7, {"ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
                             "pidfd_getfd": 438, "prlimit64": 261}),
}
SECCOMP_FD_ARG = "{seccomp-fd}"  # replaced by the descriptor the filter is passed on


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """A seccomp program for bubblewrap's `--seccomp`: EPERM for ptrace, process_vm_readv/writev, kcmp and
    pidfd_getfd, for prlimit64 on any process but the caller (pid argument 0: what `setrlimit` uses), and for
    every call of another ABI (x32, i386 on x86_64). None on an architecture not listed above."""
    arch = _SYSCALLS.get(machine or os.uname().machine)
    if arch is None:
        return None
    audit_arch, nr = arch
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    blocked = [nr[k] for k in ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd")]
    # (code, jump if true, jump if false, k); a jump counts the instructions it skips; "deny" is the last one
    prog = [(ld, 0, 0, 4), (jeq, 0, "deny", audit_arch), (ld, 0, 0, 0), (jge, "deny", 0, 0x40000000)]
    prog += [(jeq, "deny", 0, n) for n in blocked]
    prog += [(jeq, 0, 4, nr["prlimit64"]), (ld, 0, 0, 16), (jeq, 0, "deny", 0), (ld, 0, 0, 20),  # pid == 0
             (jeq, 0, "deny", 0), (ret, 0, 0, allow), (ret, 0, 0, deny)]
    out = [struct.pack("=HBBI", code, *(len(prog) - i - 2 if j == "deny" else j for j in (jt, jf)), k)
           for i, (code, jt, jf, k) in enumerate(prog)]
    return b"".join(out)


@functools.lru_cache(maxsize=None)
def bwrap_options() -> str:
    """`bwrap --help`: options newer than bubblewrap 0.4 (`--disable-userns` 0.8, `--size` 0.5) are optional."""
    try:
        return subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _under_tmp(path: str) -> bool:
    return path == "/tmp" or path.startswith("/tmp/")


def _moved(path: str, prefixes: tuple[str, ...], new: str) -> str:
    """`path` with the first of `prefixes` it starts with replaced by `new` (unchanged if none)."""
    for old in prefixes:
        if path == old or path.startswith(old.rstrip("/") + "/"):
            return new + path[len(old.rstrip("/")):]
    return path


def bwrap_command(python: str, limits: Limits) -> list[str]:
    """The bubblewrap command line that runs `python -I <runner>` in a fresh sandbox."""
    # --as-pid-1: the runner is the PID namespace's init (no bubblewrap init holding the result pipe; the
    # kernel drops signals sent to an init from inside its namespace)
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--as-pid-1",
           "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--clearenv"]
    if "--disable-userns" in bwrap_options():
        cmd.append("--disable-userns")
    for k, v in ENV.items():
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
    cmd += ["--size", str(limits.tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp"]
    # the interpreter: its installation, and the virtual environment it is started from (packages only).
    # One that lives under /tmp (a CI clone's venv) is bound outside it, at /sandbox/python<i>: a bind inside
    # the scratch space would leave folders there that no program may find or fill and no wipe can remove.
    for i, prefix in enumerate(sorted({sys.base_prefix, sys.prefix})):
        real = os.path.realpath(prefix)
        if real.startswith("/usr/"):
            continue
        if _under_tmp(real):
            moved = f"/sandbox/python{i}"
            cmd += ["--ro-bind", real, moved]
            python = _moved(python, (os.path.abspath(prefix), real), moved)
        else:
            cmd += ["--ro-bind", real, real]
            if os.path.abspath(prefix) != real:
                cmd += ["--symlink", real, os.path.abspath(prefix)]
    cmd += ["--ro-bind", str(RUNNER), _IN_SANDBOX_RUNNER, "--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.shm_mb * 1024 * 1024), "--perms", "1777", "--tmpfs", "/dev/shm",
            # bubblewrap's own / and /dev are writable tmpfs mounts without a size: read-only, so that the
            # two size-limited mounts above are the only writable places
            "--remount-ro", "/dev", "--remount-ro", "/",
            # and /proc: a non-dumpable runner's /proc files belong to the sandbox's outer uid (root for a root
            # caller), so e.g. /proc/1/oom_score_adj would be writable by the programs
            "--remount-ro", "/proc"]
    if seccomp_filter() is not None:
        cmd += ["--seccomp", SECCOMP_FD_ARG]
    cmd += ["--chdir", "/tmp", "--", python, "-I", _IN_SANDBOX_RUNNER]
    return cmd
