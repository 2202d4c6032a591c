"""sequela study: the study file's check, the -S arguments, and what is kept from the experiment."""

import subprocess
from pathlib import Path

import pytest
import yaml

from sequela.cli import study

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_every_committed_study_names_only_keys_of_params_yaml():
    files = sorted((ROOT / "studies").glob("*.yaml"))
    assert files
    for path in files:
        assert study.read_study(path, PARAMS)
        assert yaml.safe_load(path.read_text())["description"].strip()


def test_a_key_params_yaml_lacks_is_named_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "typo.yaml"
    bad.write_text("set:\n  grid.seed: [0, 1]\n")
    with pytest.raises(study.StudyError, match=r"set.grid.seed is not a key of params.yaml"):
        study.read_study(bad, PARAMS)
    empty = tmp_path / "empty.yaml"
    empty.write_text("description: nothing\n")
    with pytest.raises(study.StudyError, match="a mapping of params.yaml keys"):
        study.read_study(empty, PARAMS)


def test_values_reach_dvc_as_yaml_flow():
    args = study.set_params({"grid.seeds": [0, 1, 2], "defense.ft.lr": 0.001, "encoder.model": None})
    assert args == ["-S", "grid.seeds=[0, 1, 2]", "-S", "defense.ft.lr=0.001", "-S", "encoder.model=null"]


def git(*args, cwd):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True
    )


def test_the_reports_of_the_experiment_commit_are_kept_whole(tmp_path):
    repo = tmp_path / "repo"
    (repo / "reports/tables").mkdir(parents=True)
    (repo / "metrics").mkdir()
    (repo / "reports/tables/claims.md").write_text("five seeds\n")
    (repo / "metrics/summary.json").write_text("{}\n")
    (repo / "params.yaml").write_text("grid: {seeds: [0, 1, 2, 3, 4]}\n")
    (repo / "notes.txt").write_text("not a report\n")
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "exp", cwd=repo)
    git("update-ref", "refs/exps/ab/cdef/digits-5-seeds", "HEAD", cwd=repo)
    out = repo / "reports/studies/digits-5-seeds"
    (out / "tables").mkdir(parents=True)
    (out / "tables/stale.md").write_text("from an earlier run\n")
    ref = study.experiment_ref("digits-5-seeds", repo)
    assert study.keep_reports(ref, out, repo) == 3
    kept = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert kept == ["metrics/summary.json", "params.yaml", "tables/claims.md"]
    assert not out.with_name("digits-5-seeds.partial").exists()
    with pytest.raises(study.StudyError, match="no git ref"):
        study.experiment_ref("other", repo)


def test_every_committed_study_passes_the_check_stage_with_its_values():
    """A study's values must pass the same check the pipeline's first stage runs (a study that set the
    grid's attacks without the lists that must lie within them failed there, after its setup)."""
    import copy

    from sequela.validate import validate

    for path in sorted((ROOT / "studies").glob("*.yaml")):
        params = copy.deepcopy(PARAMS)
        for key, value in study.read_study(path, PARAMS).items():
            *parents, last = key.split(".")
            node = params
            for part in parents:
                node = node[part]
            node[last] = value
        assert validate(params) == [], path.name
