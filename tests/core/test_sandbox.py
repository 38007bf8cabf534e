"""The sandbox for generated code (`llm_efficiency_bench.core.sandbox`): one test per attack on the suite.

Every attack runs inside bubblewrap and must leave the canary files, the suite's files and the test's
environment untouched, and no process behind. Where the attack is only stopped by the isolation, the same
program is also run in the explicitly unsafe mode as a control, which shows the attack is real (it deletes,
overwrites, leaks or connects there), so the sandboxed assertion could fail.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import shutil
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from llm_efficiency_bench.core import sandbox
from llm_efficiency_bench.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap (`bwrap`) is not installed: apt-get install bubblewrap")


def _tree_state() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file of the suite's code and configs."""
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size)
            for top in ("llm_efficiency_bench", "reproduce", "references") for p in (REPO / top).rglob("*") if p.is_file()}


def _alive(marker: str) -> list[int]:
    """PIDs (not zombies, not this process) whose command line or name contains `marker`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()
            comm = Path(f"/proc/{d}/comm").read_bytes()
            state = Path(f"/proc/{d}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and (marker.encode() in cmd or marker[:15].encode() in comm):
            out.append(int(d))
    return out


def _alive_after(marker: str, grace: float = 2.0) -> list[int]:
    """Survivors once the kernel has had `grace` seconds to tear the namespace down."""
    end = time.monotonic() + grace
    while (pids := _alive(marker)) and time.monotonic() < end:
        time.sleep(0.05)
    return pids


@pytest.fixture
def marker() -> str:
    return "bsbx" + secrets.token_hex(5)  # 14 characters: fits the 15 of /proc/<pid>/comm


@pytest.fixture
def guard(marker):
    """The suite's files and environment before; asserts after that nothing changed and nothing survives."""
    def environ() -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # pytest's own, per phase

    tree, env = _tree_state(), environ()
    yield
    assert _alive_after(marker) == [], "a process of the batch survived"
    assert environ() == env
    assert _tree_state() == tree


@pytest.fixture
def unsafe(monkeypatch):
    """Run in the unisolated mode (as if bubblewrap were missing), for the controls."""
    def run(programs, **kw):
        with monkeypatch.context() as m:
            m.setattr(sandbox, "isolation_problem", lambda: "forced by the test")
            return sandbox.run_programs(programs, allow_unsafe=True, **kw)
    return run


@pytest.fixture
def secret(monkeypatch) -> str:
    """A secret in the suite's environment (set before `guard` takes its snapshot)."""
    value = "s3cret-" + secrets.token_hex(8)
    monkeypatch.setenv("BENCH_TEST_SECRET", value)
    return value


def _canary(folder: Path, name: str = "canary.txt") -> Path:
    p = folder / name
    p.write_text("canary\n")
    return p


# the program that names itself `marker` (cmdline via argv, or /proc/self/comm for a bare fork)
_NAME = "import ctypes\nctypes.CDLL(None).prctl(15, {m!r}.encode(), 0, 0, 0)\n"

_DELETE = {
    "os_unlink": "import os\nos.unlink({p!r})\n",
    "posix_unlink": "import posix\nposix.unlink({p!r})\n",
    "ctypes_unlink": ("import ctypes, os\nrc = ctypes.CDLL('libc.so.6', use_errno=True).unlink({p!r}.encode())\n"
                      "assert rc == 0, os.strerror(ctypes.get_errno())\n"),
    "posix_spawn_rm": ("import os\npid = os.posix_spawn('/bin/rm', ['rm', {p!r}], {{}})\n"
                       "assert os.waitpid(pid, 0)[1] == 0\nassert not os.path.exists({p!r})\n"),
    "subprocess_rm": "import subprocess\nsubprocess.run(['rm', {p!r}], check=True)\n",
}


@needs_bwrap
@pytest.mark.parametrize("route", sorted(_DELETE))
def test_delete_canary_is_contained(route, tmp_path, guard, unsafe):
    target = _canary(tmp_path)
    res = sandbox.run_programs([_DELETE[route].format(p=str(target))], timeout=5.0)
    assert target.read_text() == "canary\n"
    assert res[0]["status"] == "failed" and res[0]["isolation"] == sandbox.ISOLATED, res  # it reports its failure
    # control: the same program deletes the file where nothing isolates it
    ctl = _canary(tmp_path, "control.txt")
    assert unsafe([_DELETE[route].format(p=str(ctl))], timeout=5.0)[0]["status"] == "passed"
    assert not ctl.exists()


@needs_bwrap
def test_overwrite_canary_is_contained(tmp_path, guard, unsafe):
    target = _canary(tmp_path)
    prog = "open({p!r}, 'w').write('pwned')\nimport os\nos.truncate({p!r}, 0)\n"
    res = sandbox.run_programs([prog.format(p=str(target))], timeout=5.0)
    assert res[0]["status"] == "failed" and target.read_text() == "canary\n"
    ctl = _canary(tmp_path, "control.txt")
    unsafe([prog.format(p=str(ctl))], timeout=5.0)
    assert ctl.read_text() == ""


@needs_bwrap
def test_secret_environment_not_readable(secret, guard, unsafe):
    # a process started by the suite with the secret in its environment (what /proc/<pid>/environ shows)
    holder = subprocess.Popen(["sleep", "30"], env={**os.environ, "BENCH_TEST_SECRET": secret})
    # its own environment, and every /proc/<pid>/environ it can see (the suite's own, without a PID namespace)
    prog = textwrap.dedent("""
        import os
        found = [os.environ.get('BENCH_TEST_SECRET', '')]
        for d in os.listdir('/proc'):
            try:
                found.append(open(f'/proc/{d}/environ', 'rb').read().decode(errors='replace'))
            except OSError:
                pass
        hit = [e for e in found if 's3cret-' in e]
        raise RuntimeError(hit[0][hit[0].index('s3cret-'):][:23] if hit else 'nothing found')
    """)
    res = sandbox.run_programs([prog], timeout=5.0)
    assert res[0]["message"] == "failed: RuntimeError: nothing found" and secret not in json.dumps(res)
    try:
        assert secret in unsafe([prog], timeout=5.0)[0]["message"]  # control: readable there, via /proc
    finally:
        holder.kill()
        holder.wait()


_SURVIVORS = {  # started, then the program returns; each writes a file 3 s later unless it is killed first
    "fork": _NAME + "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(3)\n"
                    "    open({p!r}, 'w').write('late')\n    os._exit(0)\n",
    "spawn": ("import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import sys, time; time.sleep(3); "
              "open(sys.argv[1], \"w\").write(\"late\")', {p!r}, {m!r}], start_new_session=True)\n"),
    "double_fork_daemon": _NAME + ("import os, signal, time\nif os.fork() == 0:\n    os.setsid()\n"
                                   "    if os.fork() == 0:\n        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                   "        signal.signal(signal.SIGHUP, signal.SIG_IGN)\n        time.sleep(3)\n"
                                   "        open({p!r}, 'w').write('late')\n    os._exit(0)\n"),
}
_CHECK_STARTED = textwrap.dedent("""
    import os, time
    def _named(d):
        try:
            return {m!r}.encode() in open(f'/proc/{{d}}/cmdline', 'rb').read() + open(f'/proc/{{d}}/comm', 'rb').read()
        except OSError:
            return False
    time.sleep(0.3)
    assert any(_named(d) for d in os.listdir('/proc') if d.isdigit() and int(d) != os.getpid()), 'not started'
""")


@pytest.mark.e2e
@needs_bwrap
def test_fork_and_spawn_survivors_are_killed(tmp_path, marker, guard, unsafe):
    t0 = time.monotonic()
    for mode, run in (("sandbox", sandbox.run_programs), ("unsafe", unsafe)):
        progs = [(_SURVIVORS[k] + _CHECK_STARTED).format(p=str(tmp_path / f"{mode}_{k}"), m=marker)
                 for k in sorted(_SURVIVORS)]
        res = run(progs, timeout=5.0)
        # each program saw its survivor running before it returned (so the check below is not vacuous) ...
        assert [r["status"] for r in res] == ["passed"] * len(progs), res
        assert _alive_after(marker) == [], mode  # ... and nothing of it is left once the batch is done
    time.sleep(max(0.0, t0 + 4.0 - time.monotonic()))
    assert sorted(os.listdir(tmp_path)) == []  # no late write, in either mode


@needs_bwrap
def test_memory_bomb_is_limited_and_reported(guard):
    bomb = "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 2 ** 20))\n"
    t = time.monotonic()
    res = sandbox.run_programs([bomb, "x = bytearray(10 ** 12)"], timeout=10.0, limits=sandbox.Limits(memory_mb=256))
    assert [r["status"] for r in res] == ["failed", "failed"]
    assert all("MemoryError (memory limit 256 MB)" in r["message"] for r in res), res
    assert time.monotonic() - t < 8.0  # stopped by the limit, not by the 10 s clock


@pytest.mark.e2e
@needs_bwrap
def test_loop_ignoring_sigalrm_times_out(marker, guard, unsafe):
    prog = _NAME + "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nsignal.alarm(1)\nwhile True:\n    pass\n"
    for run in (sandbox.run_programs, unsafe):
        t = time.monotonic()
        res = run([prog.format(m=marker), "x = 1"], timeout=1.0)
        assert [r["status"] for r in res] == ["timed out", "passed"]  # and the next program still runs
        assert time.monotonic() - t < 6.0
        assert _alive_after(marker) == []


@pytest.mark.e2e
@needs_bwrap
def test_child_outliving_a_cut_batch_is_killed(tmp_path, marker, guard, unsafe):
    # the batch limit cuts the program while its child runs; then the runner itself is killed (backstop)
    prog = (_SURVIVORS["spawn"] + "import time\ntime.sleep(60)\n").format(p=str(tmp_path / "late"), m=marker)
    res = sandbox.run_programs([prog, "x = 1"], timeout=30.0, batch_timeout=1.5)
    assert [r["status"] for r in res] == ["timed out", "timed out"]
    assert "batch limit" in res[1]["message"]
    assert _alive_after(marker) == []


@pytest.mark.e2e
@needs_bwrap
@pytest.mark.parametrize("grace", [10.0, -1.0], ids=["runner_keeps_limit", "runner_killed"])
def test_three_sleepers_past_the_batch_limit(grace, marker, guard, monkeypatch):
    monkeypatch.setattr(sandbox, "_GRACE_S", grace)  # -1: the suite's own backstop kill, not the runner's clock
    sleeper = (_NAME + "import time\ntime.sleep(60)\n").format(m=marker)
    t = time.monotonic()
    res = sandbox.run_programs([sleeper] * 3, timeout=30.0, batch_timeout=2.0)  # no TimeoutExpired escapes
    assert [r["status"] for r in res] == ["timed out"] * 3
    assert time.monotonic() - t < 8.0
    assert _alive_after(marker) == []


@needs_bwrap
def test_network_is_unreachable(guard, unsafe):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        srv.setblocking(False)
        port = srv.getsockname()[1]
        prog = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'x')\n"
        res = sandbox.run_programs([prog, "import socket\nsocket.getaddrinfo('pypi.org', 443)\n"], timeout=5.0)
        assert [r["status"] for r in res] == ["failed", "failed"], res
        with pytest.raises(BlockingIOError):
            srv.accept()  # nothing connected
        assert unsafe([prog], timeout=5.0)[0]["status"] == "passed"  # control: the listener is reachable
        srv.accept()[0].close()


def test_no_isolation_stops_with_one_error_naming_the_setting(monkeypatch):
    probe = sandbox.isolation_problem.__wrapped__  # the uncached self-test
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    assert "bubblewrap" in probe()  # names the missing tool
    monkeypatch.undo()
    monkeypatch.setattr(sandbox, "isolation_problem", lambda: "bubblewrap (`bwrap`) is not installed")
    with pytest.raises(ConfigError) as e:
        sandbox.run_programs(["x = 1"], unsafe_setting="sandbox.allow_unsafe")
    assert e.value.setting == "sandbox.allow_unsafe" and "bwrap" in str(e.value)
    with pytest.raises(ConfigError):
        sandbox.run_programs(["x = 1"], allow_unsafe="yes")  # type: ignore[arg-type]
    res = sandbox.run_programs(["x = 1", "assert False"], allow_unsafe=True)
    assert [(r["status"], r["isolation"]) for r in res] == [("passed", sandbox.UNSAFE), ("failed", sandbox.UNSAFE)]


@pytest.mark.e2e
@needs_bwrap
def test_humaneval_canonical_solutions_pass_in_the_sandbox(data_dir, guard):
    from llm_efficiency_bench.adaptive_step.code_exec import check_completions

    with gzip.open(data_dir / "humaneval" / "HumanEval.jsonl.gz", "rt") as f:
        probs = [json.loads(line) for line in f if line.strip()]
    assert len(probs) == 164
    t = time.monotonic()
    res = check_completions(probs, [p["canonical_solution"] for p in probs])
    took = time.monotonic() - t
    assert [r["task_id"] for r in res if not r["passed"]] == []
    assert {r["isolation"] for r in res} == {sandbox.ISOLATED}
    assert took < 60.0, f"164 canonical solutions took {took:.1f} s"
    wrong = check_completions(probs[:2], ["    return None\n", "    return 0\n"])
    assert [r["passed"] for r in wrong] == [False, False]


def test_adaptive_step_code_checks_name_the_unsafe_setting(data_dir, monkeypatch):
    """Without isolation the AdaptiveStep code path stops with `sandbox.allow_unsafe` (already when it loads
    the problems, before any training); =true runs UNSAFE."""
    from llm_efficiency_bench.adaptive_step import tasks
    from tests.conftest import compose

    monkeypatch.setattr(sandbox, "isolation_problem", lambda: "bubblewrap (`bwrap`) is not installed")
    cfg = compose("adaptive_step", ["experiment=bon", "profile=smoke", "task=humaneval"])
    assert cfg.sandbox.allow_unsafe is False
    prob = tasks.load_humaneval(str(data_dir), limit=1)[0]
    task = tasks.make_task(cfg)
    for call in (lambda: task.load("test", 1), lambda: task.check_batch([prob.solution], [prob])):
        with pytest.raises(ConfigError) as e:
            call()
        assert e.value.setting == "sandbox.allow_unsafe"
    before = sandbox.usage().get(sandbox.UNSAFE, 0)
    cfg = compose("adaptive_step", ["experiment=bon", "profile=smoke", "task=humaneval", "sandbox.allow_unsafe=true"])
    task = tasks.make_task(cfg)
    assert task.load("test", 1)[0].uid == prob.uid
    assert task.check_batch([prob.solution, "    return None\n"], [prob] * 2) == [True, False]
    assert sandbox.usage()[sandbox.UNSAFE] - before == 2  # what the runner writes into the record's env.code_execution


def _sandbox_probe(ctx) -> None:
    """An experiment (resolved through `experiment.fn`) that runs three programs unisolated."""
    sandbox.run_programs(["x = 1", "x = 2", "assert False"], allow_unsafe=True)
    ctx.record.add("n", 1.0, "count", "higher")


def test_record_says_how_generated_code_was_contained(tmp_path, monkeypatch):
    """The runner writes `env.code_execution` (programs per mode) into the record of an experiment."""
    import json as _json

    from omegaconf import OmegaConf

    from llm_efficiency_bench.core import runner
    from tests.conftest import compose

    monkeypatch.setattr(sandbox, "isolation_problem", lambda: "forced by the test")
    cfg = compose("adaptive_step", ["experiment=bon", "profile=smoke", f"results_dir={tmp_path}"])
    OmegaConf.set_struct(cfg, False)
    cfg.experiment.name = "_sandbox_probe"
    cfg.experiment.fn = "tests.core.test_sandbox:_sandbox_probe"
    path = runner.run("adaptive_step", cfg)
    assert _json.loads(Path(path).read_text())["env"]["code_execution"] == {sandbox.UNSAFE: 3}
