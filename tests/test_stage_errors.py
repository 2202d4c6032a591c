"""Whatever a user can fix stops a stage with one line (what, where, how to fix it), a non-zero
status and no traceback; SEQUELA_TRACEBACK=1 shows the traceback; a bug always shows it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sequela.pipeline.errors import StageError
from sequela.pipeline.errors import exit_on_error as run_stage

ROOT = Path(__file__).resolve().parents[1]


def stage(cwd: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        timeout=300,
    )


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("errors")
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    assert stage(root, "prepare.py", "--dataset", "digits").returncode == 0
    return root


def test_a_corrupt_input_artefact_gets_one_line_naming_it(prepared):
    data = prepared / "data/prepared/digits/data.safetensors"
    intact = data.read_bytes()
    try:
        data.write_bytes(intact[: len(intact) // 3])  # a half-copied file
        result = stage(prepared, "clean.py", "--dataset", "digits", "--seed", "0")
        assert result.returncode == 1
        line = one_line(result)
        assert line.startswith("error in stage clean --dataset digits --seed 0: ")
        assert "data/prepared/digits/data.safetensors" in line and "dvc repro" in line
        debug = stage(prepared, "clean.py", "--dataset", "digits", "--seed", "0", SEQUELA_TRACEBACK="1")
        assert debug.returncode == 1 and "Traceback" in debug.stderr and "StageError" in debug.stderr
    finally:
        data.write_bytes(intact)


def test_a_missing_input_artefact_gets_one_line_saying_to_run_dvc_repro(prepared):
    # The backdoored model trains on the poison stage's artefact, which has not been made here.
    result = stage(prepared, "train.py", "--dataset", "digits", "--attack", "badnets", "--seed", "0")
    assert result.returncode == 1
    line = one_line(result)
    assert "data/standalone/digits/seed0/backdoored/badnets/poison" in line and "is missing" in line
    assert "dvc repro" in line


def test_a_warning_for_an_unread_key_is_one_line_and_the_stage_still_runs(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["defence"] = {"epochs": 3}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = stage(tmp_path, "check.py")
    assert result.returncode == 0 and (tmp_path / "data/params-checked").is_file()
    assert result.stdout.strip() == (
        "warning: params.yaml: defence is not a key the pipeline reads; it is ignored (a typo?)"
    )


@pytest.mark.parametrize(
    "error, status, says",
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), 1, "lower the recipe's batch_size"),
        (StageError("x.safetensors cannot be read"), 1, "x.safetensors cannot be read"),
        (
            FileNotFoundError(2, "No such file or directory", "data/prepared/gtsrb/meta.json"),
            1,
            "data/prepared/gtsrb/meta.json is missing",
        ),
    ],
)
def test_expected_failures_become_one_line_and_a_status(monkeypatch, capsys, error, status, says):
    monkeypatch.setattr(sys, "argv", ["stages/train.py", "--dataset", "gtsrb"])
    monkeypatch.delenv("SEQUELA_TRACEBACK", raising=False)

    def main():
        raise error

    with pytest.raises(SystemExit) as exit_:
        run_stage(main)
    assert exit_.value.code == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error in stage train --dataset gtsrb: ") and says in err


def test_a_bug_keeps_its_traceback(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["stages/train.py"])

    def main():
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_stage(main)
