"""Self-describing model files, `sequela convert` and `sequela defend`: a model from outside the
pipeline goes through the pipeline's own defense code, and every bad input gets one line and leaves
nothing written."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file as raw_save

from sequela import models
from sequela.cli import convert, defend
from sequela.defenses.apply import Defended, apply_defense
from sequela.defenses.registry import DEFENSES
from sequela.pipeline.config import read_params
from sequela.pipeline.errors import StageError
from sequela.training.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "arch": "small_cnn",
    "in_channels": 1,
    "num_classes": 3,
    "mean": [0.5],
    "std": [0.25],
    "width": 4,
    "input_shape": [1, 8, 8],
}


def small_model(seed: int = 0) -> models.Classifier:
    torch.manual_seed(seed)
    return models.build_from_spec(SPEC)


def test_a_model_file_rebuilds_from_itself_and_a_bare_one_is_refused(tmp_path):
    model = small_model().eval()
    models.save_file(model, SPEC, tmp_path / "m.safetensors")
    again, spec = models.load_file(tmp_path / "m.safetensors")
    x = torch.rand(5, 1, 8, 8)
    assert spec == SPEC and torch.equal(model(x), again.eval()(x))
    raw_save(model.state_dict(), str(tmp_path / "bare.safetensors"))
    with pytest.raises(StageError, match="carries no sequela model metadata"):
        models.load_file(tmp_path / "bare.safetensors")


def backdoorbench_names(state: dict) -> dict:
    ours_to_theirs = {v: k for k, v in models.PREACT_NAMES.items()}
    out = {}
    for k, v in state.items():
        if k.startswith(("normalize.", "channel_mask")):
            continue  # a BackdoorBench checkpoint has neither
        prefix = next(p for p in ours_to_theirs if k.startswith(p))
        out["module." + ours_to_theirs[prefix] + k.removeprefix(prefix)] = v
    return out


def test_convert_maps_a_backdoorbench_preact_resnet18_checkpoint_onto_the_same_function(tmp_path):
    torch.manual_seed(1)
    spec = {
        "arch": "preact_resnet18",
        "in_channels": 3,
        "num_classes": 10,
        "mean": [0.0] * 3,
        "std": [1.0] * 3,
        "width": 8,
        "input_shape": [3, 16, 16],
    }
    model = models.build_from_spec(spec).eval()
    torch.save({"model": backdoorbench_names(model.state_dict()), "num_classes": 10}, tmp_path / "bb.pt")
    args = [
        str(tmp_path / "bb.pt"),
        "--arch",
        "preact_resnet18",
        "--num-classes",
        "10",
        "--input-shape",
        "3,16,16",
        "--width",
        "8",
        "--out",
        str(tmp_path / "m.safetensors"),
    ]
    assert convert.main(args) == 0
    converted, got = models.load_file(tmp_path / "m.safetensors")
    x = torch.rand(4, 3, 16, 16)
    assert got == spec and torch.equal(converted.eval()(x), model(x))


def test_convert_names_the_first_mismatch_and_never_unpickles(tmp_path, capsys):
    torch.manual_seed(1)
    torch.save(small_model().state_dict(), tmp_path / "w.pt")
    base = ["--arch", "small_cnn", "--input-shape", "1,8,8", "--width", "4", "--out", str(tmp_path / "m.safetensors")]
    assert convert.main([str(tmp_path / "w.pt"), "--num-classes", "5", *base]) == 2
    assert "'fc.weight' has shape (3, 16)" in capsys.readouterr().err
    assert (
        convert.main(
            [
                str(tmp_path / "w.pt"),
                "--num-classes",
                "3",
                *base[:-4],
                "--width",
                "8",
                "--out",
                str(tmp_path / "m.safetensors"),
            ]
        )
        == 2
    )
    assert "shape" in capsys.readouterr().err
    wrong_arch = ["--arch", "compact_cnn", *base[2:]]  # a small_cnn checkpoint named as another architecture
    assert convert.main([str(tmp_path / "w.pt"), "--num-classes", "3", *wrong_arch]) == 2
    assert "compact_cnn with these arguments has (4, 4, 3, 3)" in capsys.readouterr().err
    torch.save({"w": torch.zeros(1), "obj": np.zeros(2, dtype=object)}, tmp_path / "pickle.pt")
    assert convert.main([str(tmp_path / "pickle.pt"), "--num-classes", "3", *base]) == 2
    assert "weights_only=True" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def image_folder(root: Path, x: torch.Tensor, y: torch.Tensor) -> Path:
    from PIL import Image

    for i, (image, label) in enumerate(zip(x, y)):
        (root / f"class{int(label)}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(root / f"class{int(label)}" / f"{i:04d}.png")
    return root


@pytest.fixture()
def folders(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (60, 1, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.arange(60) % 3
    model = small_model()
    models.save_file(model, SPEC, tmp_path / "model.safetensors")
    clean = image_folder(tmp_path / "clean", x[:30], y[:30])
    test = image_folder(tmp_path / "test", x[30:], y[30:])
    return tmp_path, model, clean, test


def test_defend_runs_the_pipelines_defense_code_on_a_model_from_a_file(folders):
    tmp, model, clean, test = folders
    out = tmp / "out"
    argv = [
        str(tmp / "model.safetensors"),
        "--clean",
        str(clean),
        "--test",
        str(test),
        "--triggered",
        str(test),
        "--target",
        "0",
        "--members",
        str(clean),
        "--non-members",
        str(test),
        "--defenses",
        "ft",
        "--params",
        str(ROOT / "params.yaml"),
        "--batch-size",
        "8",
        "--crop-padding",
        "1",
        "--device",
        "cpu",
        "--val-share",
        "0",
        "--lr-rule",
        "fixed",
        "--out",
        str(out),
    ]
    assert defend.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"none", "ft"} and "mia_loss_auc" in report["models"]["ft"]
    # The same defense through the pipeline's loop on the same data and seed: the same weights.
    from sequela import folders as read

    clean_split, _ = read.read_images(clean, 1)
    test_split, _ = read.read_images(test, 1)
    recipe = Recipe(model="small_cnn", epochs=0, batch_size=8, lr=0.0, crop_padding=1, width=4)
    cell = Defended(
        backdoored=copy.deepcopy(model),
        spec=SPEC,
        clean=clean_split,
        train=clean_split,
        poisoned=torch.empty(0, dtype=torch.long),
        attack=None,
        target=0,
        poison_rate=0.0,
        recipe=recipe,
        device=torch.device("cpu"),
        settings=read_params(ROOT / "params.yaml")["defense"],
        seed=0,
        test=test_split,
    )
    cell.evaluate = lambda m, split: {"ca": 0.0}
    expected = apply_defense("ft", DEFENSES["ft"].run, cell).model.state_dict()
    defended, spec = models.load_file(out / "ft" / "seed0" / "model.safetensors")
    assert spec == SPEC and all(torch.equal(expected[k], v) for k, v in defended.state_dict().items())
    assert "| ft |" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, t: a.__setitem__(0, str(t / "clean")), "not a .safetensors file"),
        (lambda a, t: a.__setitem__(a.index("--clean") + 1, str(t / "missing")), "no such folder"),
        (lambda a, t: a.__setitem__(a.index("--target") + 1, "7"), "target 7 is out of range"),
        (lambda a, t: a.__setitem__(a.index("--defenses") + 1, "spectral"), "clean data only"),
        (lambda a, t: a.__setitem__(a.index("--test") + 1, str(t / "two")), "2 class folders; the model has 3 classes"),
        (lambda a, t: a.__setitem__(a.index("--test") + 1, str(t / "big")), "--resize"),
        (lambda a, t: a.__setitem__(0, str(t / "bare.safetensors")), "carries no sequela model metadata"),
    ],
)
def test_bad_input_gets_one_line_and_nothing_is_written(folders, capsys, change, message):
    tmp, model, clean, test = folders
    image_folder(tmp / "two", torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]))
    image_folder(tmp / "big", torch.zeros(3, 1, 12, 12, dtype=torch.uint8), torch.tensor([0, 1, 2]))
    raw_save(model.state_dict(), str(tmp / "bare.safetensors"))
    argv = [
        str(tmp / "model.safetensors"),
        "--clean",
        str(clean),
        "--test",
        str(test),
        "--triggered",
        str(test),
        "--target",
        "0",
        "--defenses",
        "ft",
        "--params",
        str(ROOT / "params.yaml"),
        "--out",
        str(tmp / "out"),
    ]
    change(argv, tmp)
    assert defend.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp / "out").exists() and not (tmp / "out.partial").exists()


def test_resize_is_allowed_when_asked_and_stated(folders):
    tmp, _, clean, _ = folders
    image_folder(tmp / "big", torch.zeros(3, 1, 12, 12, dtype=torch.uint8), torch.tensor([0, 1, 2]))
    argv = [
        str(tmp / "model.safetensors"),
        "--clean",
        str(clean),
        "--test",
        str(tmp / "big"),
        "--defenses",
        "",
        "--params",
        str(ROOT / "params.yaml"),
        "--resize",
        "--out",
        str(tmp / "out"),
    ]
    assert defend.main(argv) == 0
    assert "Resized to the model's input size: test." in (tmp / "out" / "report.md").read_text()


def test_a_pickle_given_to_defend_is_refused_without_loading(folders, capsys):
    tmp, model, clean, _ = folders
    torch.save(model.state_dict(), tmp / "model.pt")
    (tmp / "model.safetensors").write_bytes((tmp / "model.pt").read_bytes())  # a pickle under a safetensors name
    argv = [str(tmp / "model.safetensors"), "--clean", str(clean), "--out", str(tmp / "out")]
    assert defend.main(argv) == 2
    assert "cannot be read as safetensors" in capsys.readouterr().err


def test_an_external_cell_without_its_folder_or_target_is_refused_by_the_params_check(folders, monkeypatch):
    from sequela import external
    from sequela.pipeline.checker import Checker
    from sequela.pipeline.errors import ConfigError

    tmp, _, clean, test = folders
    monkeypatch.chdir(tmp)
    base = {"targets": {}, "batch_size": 16, "crop_padding": 1, "flip": False, "resize": False}
    with pytest.raises(ConfigError, match="external.cells = 'mine' is not allowed; allowed: a folder external/mine/"):
        external.check(Checker({"external": {**base, "cells": ["mine"]}}))
    Path("external/mine").mkdir(parents=True)
    Path("external/mine/model.safetensors").write_bytes((tmp / "model.safetensors").read_bytes())
    Path("external/mine/clean").symlink_to(clean)
    Path("external/mine/triggered").symlink_to(test)
    with pytest.raises(ConfigError, match="external.targets.mine = None"):
        external.check(Checker({"external": {**base, "cells": ["mine"]}}))
    external.check(Checker({"external": {**base, "cells": ["mine"], "targets": {"mine": 0}}}))


def backdoorbench_result(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, target: int) -> dict:
    """An attack result laid out as BackdoorBench's save_attack_result writes it, its poisoned test
    set a prepro_cls_DatasetBD_v2 state whose images are uint8 (H, W, C) tensors (BackdoorBench
    keeps PIL images there; docs/own-model.md re-saves them as tensors)."""
    rows = [3 * i + 1 for i in range(len(images))]  # the test rows BackdoorBench kept: not 0..N-1
    order = list(reversed(rows))  # original_index_array sets the order, not the dict's
    data_dict = {row: (images[i].permute(1, 2, 0).contiguous(), target, int(labels[i])) for i, row in enumerate(rows)}
    indicator = torch.zeros(3 * len(images) + 1, dtype=torch.long)
    indicator[rows] = 1
    return {
        "model_name": "preactresnet18",
        "num_classes": 10,
        "model": backdoorbench_names(model.state_dict()),
        "data_path": "./data",
        "img_size": [16, 16, 3],
        "clean_data": "cifar10",
        "bd_train": None,
        "bd_test": {
            "bd_data_container": {"save_folder_path": None, "data_dict": data_dict, "save_file_format": ".png"},
            "getitem_all": True,
            "getitem_all_switch": False,
            "original_index_array": torch.tensor(order),
            "poison_indicator": indicator,
            "save_folder_path": None,
        },
    }


def test_a_backdoorbench_attack_result_converts_and_defends(tmp_path, capsys):
    from sequela import folders as read
    from sequela.cli.convert import BACKDOORBENCH_NORMALISATION
    from sequela.engine.loop import predict

    mean, std = BACKDOORBENCH_NORMALISATION["cifar10"]
    spec = {
        "arch": "preact_resnet18",
        "in_channels": 3,
        "num_classes": 10,
        "mean": mean,
        "std": std,
        "width": 4,
        "input_shape": [3, 16, 16],
    }
    torch.manual_seed(3)
    model = models.build_from_spec(spec).eval()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(24) % 10
    torch.save(backdoorbench_result(model, images, labels, target=0), tmp_path / "attack_result.pt")
    assert (
        convert.main(
            [
                str(tmp_path / "attack_result.pt"),
                "--backdoorbench",
                "--triggered-out",
                str(tmp_path / "triggered.npz"),
                "--out",
                str(tmp_path / "bb.safetensors"),
            ]
        )
        == 0
    )
    assert "target 0" in capsys.readouterr().out
    converted, got = models.load_file(tmp_path / "bb.safetensors")
    x = torch.rand(4, 3, 16, 16)
    assert got == spec and torch.equal(converted.eval()(x), model(x))
    triggered, _ = read.read_images(tmp_path / "triggered.npz", 3, 10)
    assert torch.equal(triggered.x, images.flip(0)) and torch.equal(triggered.y, labels.flip(0))
    # and through `sequela defend`: the model as given keeps its ASR on the poisoned test set
    clean = torch.randint(0, 256, (30, 3, 16, 16), dtype=torch.uint8, generator=g)
    read.write_folder(read.Split(clean, torch.arange(30) % 10), tmp_path / "clean")
    params = read_params(ROOT / "params.yaml")
    params["defense"]["epochs"] = 1
    (tmp_path / "params.yaml").write_text(json.dumps(params))  # JSON is YAML
    assert (
        defend.main(
            [
                str(tmp_path / "bb.safetensors"),
                "--clean",
                str(tmp_path / "clean"),
                "--triggered",
                str(tmp_path / "triggered.npz"),
                "--target",
                "0",
                "--defenses",
                "ft",
                "--val-share",
                "0",
                "--lr-rule",
                "fixed",
                "--params",
                str(tmp_path / "params.yaml"),
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    victims = labels != 0
    expected = (predict(model, images[victims]) == 0).float().mean().item()
    assert report["models"]["none"]["asr"] == pytest.approx(expected, abs=1e-3) and "ft" in report["models"]


def test_a_backdoorbench_file_that_needs_unpickling_is_refused_with_the_remedy(tmp_path, capsys):
    torch.save(
        {"model_name": "preactresnet18", "bd_test": {"x": np.zeros((2, 4, 4, 3), dtype=np.uint8)}},
        tmp_path / "attack_result.pt",
    )
    assert (
        convert.main([str(tmp_path / "attack_result.pt"), "--backdoorbench", "--out", str(tmp_path / "m.safetensors")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights_only=True" in err[0] and "docs/own-model.md" in err[0]
    assert not (tmp_path / "m.safetensors").exists()
