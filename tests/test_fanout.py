"""The parallel runner (sequela.cli.fanout) on a small DAG of real DVC stages, with Ray on 2 CPU slots.

The DAG: `a` -> `b@1`, `b@2`, `b@3` -> `c`. Each stage notes when it started and finished (outside
its outputs), checks that every input is complete, and writes its output slowly, line by line, so a
kill can leave it half-written. Checks: no stage starts before its inputs are finished; independent
stages do run side by side; a second run finds nothing to do; a runner killed mid-way and rerun
finishes the DAG with every output complete; a failing stage is named with its log and stops the
release of new stages, or with --keep-going stops only the stages downstream of it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip("ray", reason="the cluster extra: uv run --extra cluster pytest")

STEP = """
import os, sys, time
name, inputs = sys.argv[1], sys.argv[2:]
os.makedirs("times", exist_ok=True)
open(f"times/{name}.start", "w").write(repr(time.time()))
for path in inputs:
    assert open(path).read().endswith("complete\\n"), f"{path} is not complete"
if os.path.exists(f"fail-{name}"):
    sys.exit(f"stage {name} was told to fail")
os.makedirs("out", exist_ok=True)
with open(f"out/{name}.txt", "w") as f:
    for line in range(4):
        f.write(f"{name} {line}\\n"); f.flush(); time.sleep(float(os.environ.get("STEP_SECONDS", "0.5")))
    f.write("complete\\n")
open(f"times/{name}.end", "w").write(repr(time.time()))
"""

DVC_YAML = """stages:
  a:
    cmd: python step.py a
    deps:
      - step.py
    params:
      - note
    outs:
      - out/a.txt
  b:
    matrix:
      i: [1, 2, 3]
    cmd: python step.py b${item.i} out/a.txt
    deps:
      - step.py
      - out/a.txt
    outs:
      - out/b${item.i}.txt
  c:
    cmd: python step.py c out/b1.txt out/b2.txt out/b3.txt
    deps:
      - step.py
      - out/b1.txt
      - out/b2.txt
      - out/b3.txt
    outs:
      - out/c.txt
"""

UPSTREAM = {"a": [], "b1": ["a"], "b2": ["a"], "b3": ["a"], "c": ["b1", "b2", "b3"]}


def run(cmd, cwd, **kwargs):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "STEP_SECONDS": kwargs.pop("step_seconds", "0.2"),
    }
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, **kwargs)


def fanout(cwd, *args, **kwargs):
    return run([sys.executable, "-m", "sequela.cli.fanout", "--slots", "2", *args], cwd, **kwargs)


@pytest.fixture
def dag(tmp_path) -> Path:
    (tmp_path / "step.py").write_text(STEP)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text("note: one\n")
    (tmp_path / ".gitignore").write_text("/times/\n/fail-*\n")
    for cmd in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        [sys.executable, "-m", "dvc", "config", "core.analytics", "false"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        assert run(cmd, tmp_path).returncode == 0
    return tmp_path


def times(dag: Path, name: str) -> tuple[float, float]:
    return float((dag / f"times/{name}.start").read_text()), float((dag / f"times/{name}.end").read_text())


def assert_complete(dag: Path) -> None:
    for name in UPSTREAM:
        assert (dag / f"out/{name}.txt").read_text() == "".join(f"{name} {i}\n" for i in range(4)) + "complete\n"


def test_stages_wait_for_their_inputs_and_independent_ones_run_side_by_side(dag):
    # Stages long against a DVC start-up (2-4 s on a busy 2-core machine), so two b stages overlap.
    result = fanout(dag, step_seconds="1.5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_complete(dag)
    for name, upstream in UPSTREAM.items():
        for u in upstream:
            assert times(dag, name)[0] >= times(dag, u)[1], f"{name} started before {u} finished"
    spans = sorted(times(dag, b) for b in ("b1", "b2", "b3"))
    assert any(spans[i + 1][0] < spans[i][1] for i in range(2)), "no two b stages overlapped on 2 slots"
    again = fanout(dag)
    assert again.returncode == 0 and "every stage is up to date" in again.stdout


def test_a_killed_run_is_finished_by_rerunning_it(dag):
    runner = psutil.Popen(
        [sys.executable, "-m", "sequela.cli.fanout", "--slots", "2"],
        cwd=dag,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "STEP_SECONDS": "1.0",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
    )
    deadline = time.time() + 120
    while not list(dag.glob("out/b*.txt")):
        assert time.time() < deadline and runner.poll() is None, "the runner never reached the b stages"
        time.sleep(0.2)
    time.sleep(1.5)  # some b stage is half-written now
    # Kill everything at once, as a crash or a cancelled batch job does: the runner, Ray's processes
    # (they run in sessions of their own) and the stages they started.
    tree = [runner, *psutil.Process(runner.pid).children(recursive=True)]
    for process in tree:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    runner.wait()
    psutil.wait_procs(tree[1:], timeout=10)
    assert not (dag / "out/c.txt").exists()
    result = fanout(dag)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_complete(dag)
    assert "a: done" not in result.stdout  # finished before the kill: not run again


def test_a_failing_stage_is_named_and_nothing_after_it_starts(dag):
    (dag / "fail-b2").write_text("")
    result = fanout(dag)
    assert result.returncode == 1
    assert "stage b@2 failed" in result.stderr and "stage b2 was told to fail" in result.stderr
    assert not (dag / "times/c.start").exists()


def test_keep_going_runs_every_stage_that_does_not_depend_on_the_failure(dag):
    (dag / "fail-b2").write_text("")
    result = fanout(dag, "--keep-going")
    assert result.returncode == 1, result.stdout + result.stderr
    for name in ("a", "b1", "b3"):  # upstream of, or beside, the failed stage
        assert (dag / f"out/{name}.txt").read_text().endswith("complete\n"), name
    assert not (dag / "times/c.start").exists()  # it reads b2's output
    assert "stage b@2 failed" in result.stderr and "stage b2 was told to fail" in result.stderr
    assert "1 stage(s) failed: b@2" in result.stderr and "downstream of a failure: c" in result.stderr


@pytest.mark.parametrize("flag, value", [("--slots", "0"), ("--cpus-per-slot", "-1")])
def test_bad_slot_settings_get_one_line(dag, flag, value):
    result = run([sys.executable, "-m", "sequela.cli.fanout", flag, value], dag)
    assert result.returncode != 0 and f"{flag} = {value} is not allowed" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stage_imports_the_code_of_the_checkout_it_runs_in(tmp_path):
    # A clone's stage must run the clone's commit, not the editable install's checkout.
    from sequela.cli.fanout import with_code_of

    env = with_code_of({"PYTHONPATH": "/elsewhere"}, tmp_path)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "src"), "/elsewhere"]
    assert with_code_of({}, tmp_path)["PYTHONPATH"] == str(tmp_path / "src")


def test_clone_mode_workers_push_and_the_coordinator_restores_all_but_git_tracked_outputs(dag, tmp_path_factory):
    # Every cached stage runs in a worker's clone and comes back through the run-cache it pushed. A
    # stage with an uncached output (the report's git-tracked summary) has no run-cache entry: a
    # worker's result could not come back, so the coordinator's closing repro builds it, and only it.
    with open(dag / "dvc.yaml", "a") as f:
        f.write(
            "  r:\n    cmd: python step.py r out/c.txt\n    deps:\n      - step.py\n      - out/c.txt\n"
            "    outs:\n      - out/r.txt:\n          cache: false\n"
        )
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "r"]):
        assert run(cmd, dag).returncode == 0
    result = fanout(dag, "--clone", str(dag), "--remote", str(tmp_path_factory.mktemp("remote")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "left to this workspace's closing dvc repro --pull" in result.stdout
    ran = [line for line in result.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'r':"], ran
    assert "is cached - skipping run" in result.stdout  # the others restored, not recomputed
    assert sorted(p.name for p in (dag / "times").iterdir()) == ["r.end", "r.start"]  # only r ran here
    assert "warning" not in result.stderr
    assert_complete(dag)


def test_set_param_writes_params_yaml_before_the_stages_run_and_a_bad_key_gets_one_line(dag):
    result = fanout(dag, "-S", "nope=2")
    assert result.returncode != 0 and "-S nope=2 is not allowed" in result.stderr and "nope" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (dag / "params.yaml").read_text() == "note: one\n" and not (dag / "times").exists()

    result = fanout(dag, "-S", "note=two")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "note: two" in (dag / "params.yaml").read_text() and "note: two" in (dag / "dvc.lock").read_text()
    assert_complete(dag)
