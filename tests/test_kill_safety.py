"""A stage killed with SIGKILL at any point leaves no half-written output, and its rerun writes
exactly what an uninterrupted run writes.

The stage is the real `clean` stage on digits, run as a subprocess through a small launcher that
kills its own process at a chosen point: after the n-th optimiser step (during training), halfway
through writing an output's bytes, or just before the n-th output is renamed into place (one output
complete, the next not yet there)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from conftest import without_seconds

ROOT = Path(__file__).resolve().parents[1]

LAUNCHER = r"""
import os, runpy, signal, sys
point, n, script = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.argv = [script, *sys.argv[4:]]
sys.path.insert(0, os.path.dirname(script))
calls = [0]

def die_at_nth():
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)

if point == "step":
    import sequela.engine.optimizers as optimizers  # the training loop's own SGD
    step = optimizers.SGD.step
    def counted(self, *a, **k):
        die_at_nth()
        return step(self, *a, **k)
    optimizers.SGD.step = counted
elif point == "rename":
    replace = os.replace
    def counted(src, dst):
        die_at_nth()
        return replace(src, dst)
    os.replace = counted
elif point == "midwrite":
    import safetensors.torch as st
    import sequela.pipeline.io as sio
    def half_then_die(tensors, filename, metadata=None):
        st.save_file(tensors, filename, metadata=metadata)
        data = open(filename, "rb").read()
        with open(filename, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
        die_at_nth()
    sio.save_file = half_then_die
runpy.run_path(script, run_name="__main__")
"""

OUT = (
    "data/standalone/digits/seed0/clean",
    "metrics/cells/standalone/digits/seed0/clean.json",
    "metrics/curves/standalone/digits/seed0/clean.tsv",
)


def stage(cwd: Path, point: str | None = None, n: int = 0) -> subprocess.CompletedProcess:
    script = str(ROOT / "stages" / "clean.py")
    args = ["--dataset", "digits", "--seed", "0"]
    cmd = (
        [sys.executable, script, *args]
        if point is None
        else [sys.executable, str(cwd / "launcher.py"), point, str(n), script, *args]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def files(cwd: Path) -> dict[str, Path]:
    found = {}
    for out in OUT:
        path = cwd / out
        for f in [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []:
            if f.is_file() and not f.name.endswith(".tmp"):  # a temporary file is not an output
                found[str(f.relative_to(cwd))] = f
    return found


def content(path: Path):
    """A file's content, read as its kind is read (raises on a half-written file); timings dropped."""
    if path.suffix == ".safetensors":
        return {k: v.tolist() for k, v in load_file(str(path)).items()}
    if path.suffix == ".json":
        return without_seconds(json.loads(path.read_text()))
    return path.read_text()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["recipe"]["digits"]["epochs"] = 3
    params["attack"]["budget"]["max_rounds"] = 2  # a snapshot of the clean reference per round
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "launcher.py").write_text(LAUNCHER)
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "prepare.py"), "--dataset", "digits"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert stage(root).returncode == 0
    reference = {name: content(path) for name, path in files(root).items()}
    assert len(reference) == 4  # round1/ and round2/model.safetensors (self-describing), the cell, the curve
    return root, reference


@pytest.mark.parametrize(
    "point, n",
    [
        ("step", 40),  # during the first round's training (3 epochs are ~130 steps)
        ("midwrite", 1),  # halfway through the model's bytes
        ("rename", 3),  # both snapshots in place, the curve complete in its temporary file, not renamed
    ],
)
def test_a_killed_stage_leaves_no_half_written_output_and_its_rerun_matches(project, tmp_path, point, n):
    root, reference = project
    work = tmp_path / "work"
    shutil.copytree(root, work, ignore=shutil.ignore_patterns("standalone", "metrics"))
    killed = stage(work, point, n)
    assert killed.returncode == -9, killed.stderr  # it really was killed at that point
    for name, path in files(work).items():  # whatever exists is complete: it is the final content
        assert content(path) == reference[name], name
    rerun = stage(work)
    assert rerun.returncode == 0, rerun.stderr
    assert {name: content(path) for name, path in files(work).items()} == reference
    assert not list(work.rglob(".*.tmp")), "the rerun left a temporary file behind"
