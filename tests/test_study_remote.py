"""A study stopped part-way and rerun in a fresh clone against the same remote recomputes none of
the stages that had finished: `sequela study` pushes each finished stage and restores them first.
Real git and DVC on a two-stage project whose stages count their runs in files outside the clones;
the watcher that pushes while a study runs, on a run-cache folder of its own."""

import subprocess
import time
from pathlib import Path

from sequela.cli import study, study_remote

SCRIPT = """import pathlib, sys
if pathlib.Path({stop!r}).exists():
    sys.exit("stopped")
with open({count!r}, "a") as f:
    f.write("ran\\n")
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/{name}.txt").write_text(open("params.yaml").read() + {name!r})
"""

DVC_YAML = """stages:
  one:
    cmd: python one.py
    deps: [one.py]
    params: [work.n]
    outs: [out/one.txt]
  two:
    cmd: python two.py
    deps: [two.py, out/one.txt]
    outs: [out/two.txt]
"""


def sh(*args: str, cwd: Path) -> None:
    subprocess.run(list(args), cwd=cwd, check=True, capture_output=True)


def project(root: Path, outside: Path) -> None:
    root.mkdir()
    (root / "params.yaml").write_text("work:\n  n: 1\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "one.py").write_text(SCRIPT.format(stop=str(outside / "never"), count=str(outside / "one"), name="one"))
    (root / "two.py").write_text(SCRIPT.format(stop=str(outside / "stop-two"), count=str(outside / "two"), name="two"))
    (root / "studies").mkdir()
    (root / "studies/toy.yaml").write_text("description: two stages\nset:\n  work.n: 2\n")
    sh("git", "init", "-q", cwd=root)
    sh("dvc", "init", "-q", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "toy", cwd=root)


def runs_of(outside: Path, name: str) -> int:
    path = outside / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_stopped_study_rerun_in_a_fresh_clone_recomputes_no_finished_stage(tmp_path, monkeypatch):
    outside, remote = tmp_path / "outside", tmp_path / "remote"
    outside.mkdir()
    project(tmp_path / "first", outside)
    (outside / "stop-two").write_text("")  # stage two stops the run, after stage one has finished
    monkeypatch.chdir(tmp_path / "first")
    assert study.main(["studies/toy.yaml", "--remote", str(remote), "--push-every", "60"]) == 2
    assert (runs_of(outside, "one"), runs_of(outside, "two")) == (1, 0)
    assert any((remote / "runs").rglob("*"))  # stage one's run-cache entry reached the remote

    (outside / "stop-two").unlink()
    sh("git", "clone", "-q", str(tmp_path / "first"), str(tmp_path / "fresh"), cwd=tmp_path)
    monkeypatch.chdir(tmp_path / "fresh")
    assert study_remote.runs(tmp_path / "fresh") == 0  # a fresh clone's cache holds nothing
    assert study.main(["studies/toy.yaml", "--remote", str(remote), "--push-every", "60"]) == 0
    assert (runs_of(outside, "one"), runs_of(outside, "two")) == (1, 1)  # one restored, two computed once
    assert (tmp_path / "fresh/reports/studies/toy/run.json").is_file()


def test_the_default_remote_lies_under_the_users_cache_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert study_remote.default_url() == str(tmp_path / "cache" / "sequela" / "dvc-remote")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert study_remote.default_url() == str(Path.home() / ".cache" / "sequela" / "dvc-remote")


def test_the_keeper_pushes_each_time_the_run_cache_grows_and_once_at_the_end(tmp_path, monkeypatch):
    pushes = []
    monkeypatch.setattr(
        study_remote,
        "sync",
        lambda root, direction: pushes.append(study_remote.runs(root)) or subprocess.CompletedProcess([], 0, "", ""),
    )
    runs = tmp_path / ".dvc" / "cache" / "runs"
    with study_remote.Keeper(tmp_path, every=0.05):
        time.sleep(0.3)
        assert pushes == []  # nothing finished, nothing pushed
        (runs / "ab" / "abcd").mkdir(parents=True)
        (runs / "ab" / "abcd" / "ef01").write_text("a stage's entry")
        deadline = time.monotonic() + 5
        while not pushes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pushes == [1]  # within one check of the stage's end
        time.sleep(0.3)
        assert pushes == [1]  # and not again while nothing new finished
    assert pushes == [1, 1]  # once more as the run ends, however it ended
