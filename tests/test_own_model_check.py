"""The own-model check's scripts: train_plain.py plants BadNets as it says and writes what `sequela
convert` and `sequela defend` read; table.py writes the docs table from the reports, judging each row
against the targets."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from sequela import models

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "benchmarks" / "own_model"


def write_npz(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = (rng.random((n, 12, 12, 3)) * 120 + y[:, None, None, None] * 30).astype(np.uint8)
    with open(path, "wb") as f:
        np.savez(f, x=x, y=y)


def test_train_plain_plants_badnets_and_writes_what_convert_and_defend_read(tmp_path):
    write_npz(tmp_path / "train.npz", 200, 0)
    write_npz(tmp_path / "test.npz", 80, 1)
    out = tmp_path / "trained"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "train_plain.py"),
            "--train",
            str(tmp_path / "train.npz"),
            "--test",
            str(tmp_path / "test.npz"),
            "--arch",
            "small_cnn",
            "--width",
            "8",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    info = json.loads((out / "trained.json").read_text())
    assert info["num_classes"] == 4 and info["input_shape"] == [3, 12, 12] and 0 <= info["asr"] <= 1
    norm = json.loads((out / "normalization.json").read_text())
    model = models.build("small_cnn", 3, 4, norm["mean"], norm["std"], width=8)
    model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    with np.load(out / "triggered.npz") as f:
        x, y = f["x"], f["y"]
    assert len(y) == 60 and (y != 0).all() and (x[:, -3:, -3:, :] == 255).all()  # the test rows not of class 0
    with np.load(out / "poisons.npz") as f:
        px, py = f["x"], f["y"]
    assert len(py) == 20 and (py == 0).all() and (px[:, -3:, -3:, :] == 255).all()  # 10% of 200, relabelled


def report(given_ca: float, ft: list[tuple], sft: list[tuple]) -> dict:
    """A report.json as `sequela defend` writes one, cut to what table.py reads: per seed, (CA, ASR)."""
    runs = {}
    for seed, ((ft_ca, ft_asr), (sft_ca, sft_asr)) in enumerate(zip(ft, sft)):
        runs[str(seed)] = {
            "models": {
                "none": {"ca": given_ca, "asr": 0.97, "val_ca": 0.9},
                "ft": {"ca": ft_ca, "asr": ft_asr, "val_ca": 0.9, "seconds": 10.0, "lr_scale": 0.3},
                "sft": {"ca": sft_ca, "asr": sft_asr, "val_ca": 0.9, "seconds": 20.0, "lr_scale": 0.1},
            }
        }
    return {
        "seeds": list(range(len(ft))),
        "n_train": 90,
        "n_val": 10,
        "runs": runs,
        "collapse": {"ft": {"collapsed": False}, "sft": {"collapsed": True}},
    }


def test_table_judges_each_row_against_the_targets(tmp_path):
    work = tmp_path / "work" / "gtsrb-preact_resnet18-w16"
    (work / "trained").mkdir(parents=True)
    (work / "trained" / "trained.json").write_text(
        json.dumps({"arch": "preact_resnet18", "width": 16, "ca": 0.9, "asr": 0.97})
    )
    (work / "defended-0.05-validated").mkdir()
    (work / "defended-0.05-validated" / "report.json").write_text(
        json.dumps(
            report(0.90, ft=[(0.88, 0.5), (0.87, 0.6), (0.89, 0.4)], sft=[(0.80, 0.05), (0.86, 0.02), (0.88, 0.03)])
        )
    )
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "own-model.md").write_text(
        "before\n<!-- own-model-check: begin -->\n\n"
        "<!-- own-model-check model: gtsrb-preact_resnet18-w16 -->\nold table\n\n"
        "<!-- own-model-check model: mnist-resnet18-w16 -->\nkept table\n\n"
        "<!-- own-model-check: end -->\nafter\n"
    )
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "table.py"), str(tmp_path / "work")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "docs" / "own-model.md").read_text()
    assert page.startswith("before\n") and page.endswith("after\n") and "old table" not in page
    assert "kept table" in page  # a model measured elsewhere keeps its table
    assert page.index("model: gtsrb-preact_resnet18-w16") < page.index("model: mnist-resnet18-w16")
    ft_row = next(line for line in page.splitlines() if "| ft |" in line)
    sft_row = next(line for line in page.splitlines() if "| sft |" in line)
    assert "| -0.020 ± 0.010 |" in ft_row and ft_row.endswith("| yes |")  # FT: CA within 0.05 is the target
    # SFT: mean CA drop 0.053 (> 0.05) misses the target although its ASR is low
    assert "| -0.053 ± 0.042 |" in sft_row and sft_row.endswith("| no |") and "| yes | " in sft_row
    assert "5% (90 + 10)" in sft_row and "x0.1" in sft_row
