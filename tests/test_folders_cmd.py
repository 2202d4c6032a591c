"""`sequela folders`: a stratified, seeded share of a dataset's split written as an image folder or
a .npz that `sequela defend` reads back unchanged; an existing --out is refused. Offline: digits."""

import torch

from sequela import folders
from sequela.cli import folders_cmd
from sequela.sources import loaders


def test_a_stratified_seeded_share_round_trips_as_a_folder_and_as_npz(tmp_path, capsys):
    base = ["digits", "--split", "train", "--fraction", "0.1", "--seed", "3"]
    assert folders_cmd.main([*base, "--out", str(tmp_path / "clean")]) == 0
    assert folders_cmd.main([*base, "--format", "npz", "--out", str(tmp_path / "clean.npz")]) == 0
    split, _ = folders.read_images(tmp_path / "clean", 1, 10)
    again, _ = folders.read_images(tmp_path / "clean.npz", 1, 10)
    assert torch.equal(split.x, again.x) and torch.equal(split.y, again.y)
    train = loaders.load("digits", "data/raw").train
    expected = [max(1, round(0.1 * int(n))) for n in torch.bincount(train.y)]
    assert torch.bincount(split.y, minlength=10).tolist() == expected
    rows = folders.stratified_rows(train.y, 0.1, 3)
    assert torch.equal(split.x, train.x[rows]) and torch.equal(split.y, train.y[rows])
    assert not torch.equal(rows, folders.stratified_rows(train.y, 0.1, 4))
    capsys.readouterr()
    assert folders_cmd.main([*base, "--out", str(tmp_path / "clean")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "--force" in err[0]
    assert folders_cmd.main(["digits", "--fraction", "0.5", "--force", "--out", str(tmp_path / "clean")]) == 0
    assert len(folders.read_images(tmp_path / "clean", 1, 10)[0]) > len(split)


def test_bad_options_get_one_line_and_nothing_is_written(tmp_path, capsys):
    for args, message in [
        (["nope"], "dataset 'nope' is not allowed"),
        (["digits", "--split", "val"], "--split 'val' is not allowed"),
        (["digits", "--fraction", "0"], "--fraction 0.0 is not allowed"),
        (["digits", "--format", "npz"], "is written to a path ending in .npz"),
    ]:
        assert folders_cmd.main([*args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []
