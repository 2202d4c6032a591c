"""studies/cifar10-paper.yaml without a GPU or the real data: its values pass the pipeline's checks,
the DAG they resolve to is the paper's CIFAR-10 table (every attack, defense and seed, no sweep or
paradigm cell), and the prepare stage reads CIFAR-10 in torchvision's on-disk layout (tiny fake
pickled batches; no model is trained)."""

import copy
import os
import pickle
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sequela.cli import study
from sequela.validate import validate

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "cifar10-paper.yaml"
ATTACKS = ["badnets", "blended", "lf", "wanet", "inputaware"]
SEEDS = [0, 1, 2]


def study_params(data_root: Path) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in study.read_study(STUDY, params).items():
        *parents, last = key.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[last] = copy.deepcopy(value)
    params["data"]["root"] = str(data_root)
    return params


def fake_cifar10(root: Path, per_batch: int = 40, test: int = 200) -> None:
    """cifar-10-batches-py as torchvision unpacks it: five pickled training batches, a test batch and
    batches.meta; every class in every batch, so each split can be carved by class."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def dump(obj, name):
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))

    for i, name in enumerate([*(f"data_batch_{b}" for b in range(1, 6)), "test_batch"]):
        n = test if name == "test_batch" else per_batch
        images = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)  # planes R, G, B of 32x32
        dump({"data": images, "labels": [(j + i) % 10 for j in range(n)]}, name)
    dump(
        {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]},
        "batches.meta",
    )


@pytest.fixture
def project(tmp_path) -> Path:
    """The pipeline's definition with the study's values in params.yaml, CIFAR-10 faked under data/raw."""
    for name in ("stages", "src", "studies"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    fake_cifar10(tmp_path / "data/raw")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(study_params(Path("data/raw")), sort_keys=False))
    return tmp_path


def test_the_study_passes_the_check_stage_and_trains_the_gpu_recipe(tmp_path):
    params = study_params(tmp_path)
    assert validate(params) == []
    assert params["recipe"]["cifar10"]["use"] == "gpu" and params["recipe"]["cifar10"]["gpu"]["model"] == "resnet18"


def test_the_studys_dag_is_the_papers_cifar10_table(project):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for cmd in (["init", "-q", "--no-scm"], ["stage", "list", "--name-only"]):
        result = subprocess.run(
            [sys.executable, "-m", "dvc", *cmd], cwd=project, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
    stages = set(result.stdout.split())
    cells = [f"{a}-{s}" for a in ATTACKS for s in SEEDS]
    expected = {
        "check",
        "prepare@cifar10",
        "report",
        "pages",
        *(f"{kind}@cifar10-{s}" for kind in ("clean", "shadow") for s in SEEDS),
        *(f"{kind}@cifar10-{c}" for kind in ("poison", "train", "defend", "measure") for c in cells),
    }
    assert expected <= stages, sorted(expected - stages)
    # No sweep, transfer or encoder cell: the study turns them off, and nothing else trains.
    assert not [
        s
        for s in stages - expected
        if s.split("@")[0] in ("ablate", "transfer", "encoder", "pretrain", "badencoder", "poison", "train", "defend")
    ]


def test_prepare_reads_cifar10_in_torchvisions_layout(project, monkeypatch, capsys):
    # The fixture is not the official archive: torchvision's md5 check becomes an existence check.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda path, md5=None: os.path.isfile(path))
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project / "stages"))  # the stage imports stage.py beside it
    monkeypatch.setattr(sys, "argv", ["stages/prepare.py", "--dataset", "cifar10"])
    runpy.run_path("stages/prepare.py", run_name="__main__")  # a failure exits non-zero: SystemExit here
    # 200 training images, half carved off for the shadow model; the test split gives up the holdouts.
    assert "prepared cifar10: 100 train, 120 test, 100 shadow" in capsys.readouterr().out
    meta = yaml.safe_load((project / "data/prepared/cifar10/meta.json").read_text())
    assert meta["name"] == "cifar10" and list(meta["image_shape"]) == [3, 32, 32]
