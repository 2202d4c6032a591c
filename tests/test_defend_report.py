"""`sequela defend`'s report: the collapse check on validation rows carved from the defender's data,
seeds with mean ± sd, each defense's settings, per-epoch curves, P-ASR from the user's poisons; the
class count taken from the model; an existing --out refused; the defenses listed in --help."""

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sequela import folders, models
from sequela.cli import defend, export
from sequela.datasets.splits import Split
from sequela.defenses.registry import CLEAN_DATA_ONLY
from sequela.pipeline.config import read_params

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "arch": "small_cnn",
    "in_channels": 1,
    "num_classes": 4,
    "mean": [0.2],
    "std": [0.25],
    "width": 8,
    "input_shape": [1, 12, 12],
}


def npz(path: Path, split: Split) -> Path:
    folders.write_npz(split, path)
    return path


def stamped(planted, x: torch.Tensor) -> torch.Tensor:
    return (planted["attack"].apply(x.float() / 255.0) * 255.0).round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def case(planted, tmp_path_factory):
    """The planted model and its data as a user holds them; a short, fast `defense` section in which
    FT's learning rate is large enough to wreck the model."""
    tmp = tmp_path_factory.mktemp("own")
    models.save_file(planted["model"], SPEC, tmp / "model.safetensors")
    train, test = planted["train"], planted["test"]
    clean = train.subset(torch.arange(200, 280))
    folders.write_folder(clean, tmp / "clean")
    folders.write_folder(test, tmp / "test")
    # triggered images without the target class (0) and without the last class (3): still valid
    keep = (test.y != 0) & (test.y != 3)
    npz(tmp / "triggered.npz", Split(stamped(planted, test.x[keep]), test.y[keep]))
    others = (train.y[:100] != 0).nonzero().flatten()
    npz(tmp / "poisons.npz", Split(stamped(planted, train.x[others]), torch.zeros(len(others), dtype=torch.long)))
    params = read_params(ROOT / "params.yaml")
    params["defense"]["epochs"] = 2
    params["defense"]["ft"]["lr"] = 50.0
    params["sequela"]["retune"].update(share=0.05, epochs=2)
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp


def argv(tmp: Path, out: str, *extra: str) -> list[str]:
    return [
        str(tmp / "model.safetensors"),
        "--clean",
        str(tmp / "clean"),
        "--test",
        str(tmp / "test"),
        "--triggered",
        str(tmp / "triggered.npz"),
        "--target",
        "0",
        "--params",
        str(tmp / "params.yaml"),
        "--batch-size",
        "16",
        "--crop-padding",
        "1",
        "--device",
        "cpu",
        "--out",
        str(tmp / out),
        *extra,
    ]


@pytest.fixture(scope="module")
def report(case):
    """One run over two seeds with FT, SFT and the retuning attack at the fixed settings, shared by the
    tests below."""
    assert (
        defend.main(
            argv(
                case,
                "out",
                "--defenses",
                "ft,sft",
                "--seeds",
                "0,1",
                "--lr-rule",
                "fixed",
                "--poisons",
                str(case / "poisons.npz"),
            )
        )
        == 0
    )
    return json.loads((case / "out" / "report.json").read_text())


def test_validation_rows_are_a_stratified_seeded_share_of_the_clean_data_only():
    y = torch.tensor([0] * 40 + [1] * 9 + [2] * 2 + [3])
    rows = defend.val_rows(Split(torch.zeros(len(y), 1, 2, 2, dtype=torch.uint8), y), 0.1, seed=0)
    assert torch.bincount(y[rows], minlength=4).tolist() == [4, 1, 1, 0]  # a class's last row stays for training
    assert torch.equal(rows, defend.val_rows(Split(torch.zeros(len(y), 1, 2, 2), y), 0.1, seed=0))
    assert not torch.equal(rows, defend.val_rows(Split(torch.zeros(len(y), 1, 2, 2), y), 0.1, seed=1))


def test_a_defense_whose_validation_ca_falls_more_than_005_is_flagged_collapsed(case, report):
    assert report["n_val"] == 8 and report["n_train"] == 72 and report["val_share"] == 0.1
    for seed, run in report["runs"].items():
        given = run["models"]["none"]["val_ca"]
        for name in ("ft", "sft"):
            defended = run["models"][name]["val_ca"]
            assert run["models"][name]["collapsed"] == (given - defended > 0.05), (seed, name)
    ft = report["collapse"]["ft"]
    assert ft["collapsed"] is True and {"val_ca", "given_val_ca"} <= set(ft)
    assert ft["val_ca"] < ft["given_val_ca"] - 0.05
    md = (case / "out" / "report.md").read_text()
    assert "WARNING: ft collapsed" in md and f"{ft['given_val_ca']:.3f}" in md
    assert ("WARNING: sft collapsed" in md) == report["collapse"]["sft"]["collapsed"]


def test_the_report_lists_each_defenses_settings_and_its_steps(case, report):
    ft, sft = report["settings"]["ft"], report["settings"]["sft"]
    assert ft == {
        "rule": "fixed",
        "lr": "50",
        "schedule": "constant",
        "epochs": 2,
        "batch": 16,
        "steps": 2 * 5,
    }  # ceil(72 / 16)
    assert sft["schedule"] == "two-phase triangular" and sft["lr"] == "0.0003/0.1/0.001" and sft["steps"] == 10
    assert "| ft | fixed | 50 | constant | 2 | 10 | 16 |" in (case / "out" / "report.md").read_text()


def test_the_validated_rule_keeps_the_largest_factor_whose_validation_ca_holds(case):
    """FT at lr 50 wrecks the model; the rule tries x1, then x0.001 (lr 0.05), and keeps the first
    factor whose CA on the validation rows stays within 0.05 of the given model's."""
    assert defend.main(argv(case, "rule", "--defenses", "ft", "--seeds", "0,1", "--lr-scales", "1,0.001")) == 0
    report = json.loads((case / "rule" / "report.json").read_text())
    assert report["lr_rule"] == {"rule": "validated", "scales": [1.0, 0.001], "drop": 0.05}
    for seed, run in report["runs"].items():
        given, choice = run["models"]["none"]["val_ca"], run["lr_choice"]["ft"]
        first, *rest = choice["tried"]
        assert first["scale"] == 1.0 and given - first["val_ca"] > 0.05, seed  # lr 50 collapses: not kept
        assert [t["scale"] for t in rest] == [0.001] and given - rest[0]["val_ca"] <= 0.05, seed
        assert choice["scale"] == run["models"]["ft"]["lr_scale"] == 0.001
        assert run["models"]["ft"]["val_ca"] == pytest.approx(rest[0]["val_ca"])
        # report.json rounds every figure to 3 decimals: the sum of two rounded terms is within 0.001
        assert run["models"]["ft"]["seconds"] == pytest.approx(first["seconds"] + rest[0]["seconds"], abs=2e-3)
    assert report["collapse"]["ft"]["collapsed"] is False
    assert report["settings"]["ft"]["rule"] == "validated, x0.001" and report["settings"]["ft"]["lr"] == "0.05"
    md = (case / "rule" / "report.md").read_text()
    assert "## Learning-rate rule" in md and "| ft | validated, x0.001 | 0.05 |" in md


def test_the_validated_rule_needs_validation_rows_and_sane_factors(case, capsys):
    assert defend.main(argv(case, "norows", "--defenses", "ft", "--val-share", "0")) == 2
    assert defend.main(argv(case, "rising", "--defenses", "ft", "--lr-scales", "0.1,1")) == 2
    assert defend.main(argv(case, "rule9", "--defenses", "ft", "--lr-rule", "tuned")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "--lr-rule validated with --val-share 0" in err[0]
    assert "--lr-scales '0.1,1' is not allowed" in err[1] and "--lr-rule 'tuned' is not allowed" in err[2]
    assert not any((case / n).exists() for n in ("norows", "rising", "rule9"))


def test_seeds_give_mean_sd_and_n_and_curves_are_drawn(case, report):
    assert report["seeds"] == [0, 1] and report["n"] == 2
    for name in ("none", "ft", "sft"):
        values = [report["runs"][s]["models"][name]["asr"] for s in ("0", "1")]
        assert report["models"][name]["asr"] == pytest.approx(statistics.mean(values), abs=1e-3)
        assert report["sd"][name]["asr"] == pytest.approx(statistics.stdev(values), abs=1e-3)
    curve = report["runs"]["0"]["curves"]["sft"]
    assert [row["epoch"] for row in curve] == [0, 1, 2] and {"ca", "asr"} <= set(curve[0])
    assert (case / "out" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (case / "out" / "report.md").read_text()
    assert "Mean ± sd over the n = 2 seeds." in md and " ± " in md.split("| none |")[1].splitlines()[0]
    assert (case / "out" / "ft" / "seed1" / "model.safetensors").is_file()


def test_p_asr_is_the_retuned_models_asr_on_the_triggered_images(case, report, planted):
    from sequela.engine.batches import Augment
    from sequela.measures.retune import Retuning

    assert all("p_asr" in report["runs"]["0"]["models"][n] for n in ("none", "ft", "sft"))
    # the model as given, retuned here as the command does: the first k training rows swapped for poisons
    settings = read_params(case / "params.yaml")["sequela"]["retune"]
    clean, _ = folders.read_images(case / "clean", 1, 4)
    held = defend.val_rows(clean, 0.1, 0)
    rest = torch.ones(len(clean), dtype=torch.bool)
    rest[held] = False
    train = clean.subset(rest.nonzero().flatten())
    r = Retuning.from_settings(settings, len(train), 16, 0)
    poisons, _ = folders.read_images(case / "poisons.npz", 1, 4)
    chosen = torch.randperm(len(poisons), generator=torch.Generator().manual_seed(0))[: r.k]
    x, y = train.x.clone(), train.y.clone()
    x[: r.k], y[: r.k] = poisons.x[chosen], 0
    plain = torch.zeros(len(y), dtype=torch.bool)
    plain[: r.k] = True
    triggered, _ = folders.read_images(case / "triggered.npz", 1, 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = r.run(planted["model"], Split(x, y), plain, triggered, defend.GivenTrigger(), 0, Augment(1, False))
    finally:
        torch.set_num_threads(threads)
    assert r.k == 4 and report["runs"]["0"]["models"]["none"]["p_asr"] == pytest.approx(got["p_asr"], abs=1e-3)
    assert "## Retuning attack" in (case / "out" / "report.md").read_text()


def test_poisons_labelled_other_than_the_target_are_refused(case, capsys, planted):
    npz(case / "mislabelled.npz", Split(planted["train"].x[:20], planted["train"].y[:20]))
    assert defend.main(argv(case, "bad", "--defenses", "ft", "--poisons", str(case / "mislabelled.npz"))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labelled other than --target 0" in err[0]
    assert not (case / "bad").exists()


def test_the_class_count_is_the_models_and_class_folders_map_by_their_integer_names(case, capsys, planted):
    x, y = planted["test"].x[:12], planted["test"].y[:12]
    folders.write_folder(Split(x[y != 2], y[y != 2]), case / "no-two")  # 00, 01, 03: no folder 02
    split, classes = folders.read_images(case / "no-two", 1, 4)
    assert classes == ["0", "1", "2", "3"] and torch.equal(split.y.sort().values, y[y != 2].sort().values)
    assert defend.main(argv(case, "gap", "--test", str(case / "no-two"), "--defenses", "")) == 0
    npz(case / "label9.npz", Split(x, torch.where(y == 1, 9, y)))
    assert defend.main(argv(case, "nine", "--test", str(case / "label9.npz"), "--defenses", "")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "label 9 is out of range; allowed: 0..3" in err[-1]


def test_an_existing_out_is_refused_unless_forced(case, capsys):
    (case / "kept").mkdir()
    (case / "kept" / "mine.txt").write_text("earlier results")
    assert defend.main(argv(case, "kept", "--defenses", "")) == 2
    assert "--out" in capsys.readouterr().err and (case / "kept" / "mine.txt").is_file()
    assert defend.main(argv(case, "kept", "--defenses", "", "--force")) == 0
    assert not (case / "kept" / "mine.txt").exists() and (case / "kept" / "report.json").is_file()
    assert export.main(["--dataset", "digits", "--attack", "badnets", "--seed", "0", "--out", str(case / "kept")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists; allowed: a path that does not exist, or --force" in err[0]


def test_help_lists_every_defense_the_command_accepts(capsys):
    with pytest.raises(SystemExit):
        defend.parse(["--help"])
    shown = capsys.readouterr().out
    for name in CLEAN_DATA_ONLY:
        line = next(line for line in shown.splitlines() if line.strip().startswith(f"{name}: "))
        assert len(line.strip()) > len(name) + 5
    assert "  abl:" not in shown and "  ep:" not in shown


def test_npz_labels_may_leave_out_the_last_class(tmp_path):
    x = np.zeros((4, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.array([0, 1, 1, 2]))
    split, classes = folders.read_images(tmp_path / "a.npz", 1, 4)
    assert classes == ["0", "1", "2", "3"] and len(split) == 4
