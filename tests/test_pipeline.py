"""The real `dvc repro` on a tiny grid in a temporary git repository.

Checks: every stage runs and writes its outputs; a second run skips every stage; a forced rerun
with the same seed gives byte-identical results (wall-clock `seconds` aside); a change of
defense.epochs leaves prepare, clean, poison and train stages untouched."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, stdout_only: bool = False) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout if stdout_only else result.stdout + result.stderr


def dvc(*args: str, cwd: Path, stdout_only: bool = False) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd, stdout_only)


def without_seconds(obj):
    if isinstance(obj, dict):
        return {k: without_seconds(v) for k, v in obj.items() if not k.endswith("seconds")}
    return obj


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["grid"] = {"datasets": ["digits"], "attacks": ["badnets"], "defenses": ["sft"]}
    params["recipe"]["digits"].update(epochs=2)
    params["defense"]["epochs"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    dvc("init", "-q", cwd=repo)
    dvc("config", "core.analytics", "false", cwd=repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], repo)
    dvc("repro", cwd=repo)
    return repo


def test_repro_builds_every_output(repo):
    summary = json.loads((repo / "metrics/summary.json").read_text())
    cell = summary["standalone"]["digits"]["badnets"]
    for defense in ("none", "sft"):
        assert {"ca", "asr", "ra", "seconds"} <= set(cell[defense])
        assert all(0.0 <= cell[defense][k] <= 1.0 for k in ("ca", "asr", "ra"))
    assert (repo / "data/models/digits-badnets/sft/model.safetensors").is_file()
    for name in ("standalone.md", "standalone.csv", "standalone.tex"):
        assert (repo / "reports/tables" / name).is_file()
    assert (repo / "reports/figures/curves-digits.png").is_file()
    assert (repo / "reports/figures/sft-schedule.png").is_file()
    curve = (repo / "metrics/curves/defend/digits-badnets-sft.tsv").read_text().splitlines()
    assert curve[0].split("\t") == ["epoch", "ca", "asr", "ra", "lr"] and len(curve) == 3  # epochs 0 and 1


def test_second_repro_skips_every_stage(repo):
    out = dvc("repro", cwd=repo)
    assert "Running stage" not in out
    assert "up to date" in out


def test_same_seed_gives_identical_results(repo):
    summary = (repo / "metrics/summary.json").read_text()
    model = (repo / "data/models/digits-badnets/sft/model.safetensors").read_bytes()
    curve = (repo / "metrics/curves/defend/digits-badnets-sft.tsv").read_bytes()
    dvc("repro", "--force", cwd=repo)
    assert without_seconds(json.loads(summary)) == without_seconds(
        json.loads((repo / "metrics/summary.json").read_text()))
    # Everything but the wall-clock field is byte-identical: mask the seconds and compare text.
    mask = lambda text: re.sub(r'seconds": [0-9.]+', 'seconds": _', text)  # noqa: E731
    assert mask(summary) == mask((repo / "metrics/summary.json").read_text())
    assert model == (repo / "data/models/digits-badnets/sft/model.safetensors").read_bytes()
    assert curve == (repo / "metrics/curves/defend/digits-badnets-sft.tsv").read_bytes()


def test_defense_epochs_change_reruns_only_defend_and_later(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["defense"]["epochs"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = set(json.loads(dvc("status", "--json", cwd=repo, stdout_only=True)))
    assert stale and all(name.startswith(("defend@", "report", "sequela")) for name in stale), stale
