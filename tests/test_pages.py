"""The results pages' findings table (docs/results/findings.md) and stale-report banners, on tiny
fixture reports in a temporary folder; and the pages stage, which reads git, still skipped by a
`dvc repro` with nothing changed."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sequela import pages
from sequela.report.claims import CONFIRMATORY, POOLED, claims

ROOT = Path(__file__).resolve().parents[1]
NEW = [
    "paradigm",
    "dataset",
    "family",
    "claim",
    "scope",
    "compared",
    "n",
    "mean diff",
    "CI",
    "CI level",
    "p",
    "p Holm",
    "verdict",
    "excluded (not planted)",
    "attacks left out",
]
OLD = [
    "paradigm",
    "dataset",
    "claim",
    "scope",
    "compared",
    "n",
    "mean diff",
    "95% CI",
    "verdict",
    "excluded (not planted)",
]
PAPER = claims("mia")


def row(claim, verdict, mean, ci, n=3, paradigm="standalone", dataset="digits", scope=POOLED, **more) -> dict:
    return {
        "paradigm": paradigm,
        "dataset": dataset,
        "claim": claim.text,
        "scope": scope,
        "compared": f"{claim.figure}: {claim.a} - {claim.b}",
        "n": n,
        "mean diff": mean,
        "verdict": verdict,
        "excluded (not planted)": "",
        **more,
    }


def new_row(claim, verdict, mean, ci, **kw) -> dict:
    family = "confirmatory" if claim.confirmatory else "exploratory"
    return row(
        claim,
        verdict,
        mean,
        ci,
        family=family,
        CI=ci,
        p=0.01,
        **{"CI level": "99.00% (Holm step 1 of 7)", "p Holm": 0.02, "attacks left out": ""},
        **kw,
    )


def write(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


COLUMNS = (
    ("new digits", "new", "standalone", "digits"),
    ("old gtsrb", "old", "standalone", "gtsrb"),
    ("an encoder pair", "new", "encoder", "a-to-b"),
    ("missing", "absent", "standalone", "digits"),
)


@pytest.fixture
def reports(tmp_path) -> Path:
    sft_ft, in_place, fst = PAPER[0], PAPER[1], PAPER[CONFIRMATORY]
    write(
        tmp_path / "studies/new/tables/claims.csv",
        NEW,
        [
            new_row(sft_ft, "supported", -0.3, "[-0.500, -0.100]", n=5),
            new_row(sft_ft, "contradicted", 0.9, "[0.100, 1.700]", scope="badnets"),  # not the pooled row
            new_row(in_place, "not planted", "", "[nan, nan]", n=0),
            new_row(fst, "contradicted", 0.2, "[0.050, 0.350]", n=5),
            new_row(in_place, "contradicted", 0.011, "[-0.020, 0.042]", paradigm="encoder", dataset="a-to-b"),
        ],
    )
    # The old format: no family, "95% CI", and the bound worded differently in the claim's text.
    write(
        tmp_path / "studies/old/tables/claims.csv",
        OLD,
        [
            row(sft_ft, "inconclusive", -0.1, "[-0.4, 0.2]", dataset="gtsrb", **{"95% CI": "[-0.400, 0.200]"}),
            {
                **row(in_place, "supported", 0.891, "", dataset="gtsrb", **{"95% CI": "[0.754, 1.029]"}),
                "claim": "FT leaves the backdoor in place (ASR after FT > 0.5)",
                "compared": "asr: ft - zero",
            },
        ],
    )
    return tmp_path


def test_findings_put_each_claim_against_each_study(reports):
    page = pages.findings(reports, COLUMNS)
    table = [line for line in page.splitlines() if line.startswith("| ")]
    head, body = table[0], {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in table[1:]}
    assert "[old gtsrb](old.md)<br>old format (unadjusted)" in head and "[new digits](new.md) |" in head
    assert "[missing](absent.md) (not run yet)" in head
    # The paper's seven claims in order, then only the exploratory claims some study tests.
    assert list(body)[:CONFIRMATORY] == [c.text for c in PAPER[:CONFIRMATORY]]
    assert list(body)[CONFIRMATORY:] == [PAPER[CONFIRMATORY].text]
    family, new, old, encoder, missing = body[PAPER[0].text]
    assert family == "confirmatory"
    assert new == "✔ -0.300 [-0.500, -0.100], n = 5"  # the pooled row, not badnets' own
    assert old == "~ -0.100 [-0.400, 0.200], n = 3" and encoder == "– not run" and missing.startswith("– not run")
    _, new, old, encoder, _ = body[PAPER[1].text]
    assert new == "– not planted" and old == "✔ +0.891 [0.754, 1.029], n = 3"  # matched despite the old wording
    assert encoder == "✘ +0.011 [-0.020, 0.042], n = 3"
    assert body[PAPER[CONFIRMATORY].text][0] == "exploratory"
    # Under the table, every contradicted row said plainly, the paper's claims first.
    said = page[page.index("## Rows that contradict a claim") :]
    paper, exploratory = said.split("Exploratory claims:")
    assert paper.count("\n- ") == 1 and 'an encoder pair: not "FT leaves the backdoor in place' in paper
    assert "asr: ft - clean above 0.5" in paper and "[-0.020, 0.042] (n = 3)" in paper
    assert "99.00% (Holm step 1 of 7) interval" in paper
    assert exploratory.count("\n- ") == 1 and 'new digits: not "FST leaves a lower ASR than FT"' in exploratory
    assert "## Columns older than the code" not in page


def test_findings_name_the_stale_columns(reports):
    page = pages.findings(reports, COLUMNS, {"old": pages.Stale("aaa1111", "bbb2222", ("src/x.py",))})
    assert "- old gtsrb: ran at `aaa1111`, code changed at `bbb2222`" in page


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)
    return git(root, "rev-parse", "--short", "HEAD")


def study(root: Path, name: str, recorded: str) -> pages.Study:
    folder = root / "reports/studies" / name
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    (folder / "tables/claims.md").write_text("Claims.\n\n| a |\n|:--|\n| 1 |\n")
    run = {"commit": recorded, "date": "2026-01-02", "machine": "a CPU", "threads": "1"}
    (folder / "run.json").write_text(json.dumps(run))
    return pages.Study(name, name, "", f"uv run sequela study studies/{name}.yaml", Path("reports/studies") / name)


@pytest.fixture
def history(tmp_path) -> Path:
    """A git repo whose dvc.yaml has a computing stage (code deps src/train.py, stages/train.py) and
    the pages stage (its own code, which no report depends on)."""
    stages = {
        "train": {"cmd": "python stages/train.py", "deps": ["stages/train.py", "src/train.py", "data"]},
        "pages": {"cmd": "python stages/pages.py", "deps": ["stages/pages.py", "src/pages.py"]},
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    for name in ("stages/train.py", "src/train.py", "stages/pages.py", "src/pages.py", "data/x"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1\n")
    git(tmp_path, "init", "-q")
    return tmp_path


def test_a_report_older_than_its_code_gets_a_banner_and_a_fresh_one_does_not(history, monkeypatch):
    monkeypatch.chdir(history)  # render reads the reports from the project root, as the stage runs
    code = pages.code_deps(history / "dvc.yaml")
    assert code == ["src/train.py", "stages/train.py"]  # the pages stage's own code is left out
    a = commit(history, "A")
    (history / "src/pages.py").write_text("2\n")  # drawing code and data: no report is older for it
    (history / "data/x").write_text("2\n")
    after_a = commit(history, "pages and data")
    old, fresh = study(history, "old", a), study(history, "fresh", after_a)
    assert pages.staleness(old, history, code) is None
    (history / "src/train.py").write_text("2\n")
    b = commit(history, "B: a code dep")
    fresh = study(history, "fresh", b)
    stale = pages.staleness(old, history, code)
    assert stale == pages.Stale(a, b, ("src/train.py",))
    assert pages.staleness(fresh, history, code) is None
    page = pages.render(old, Path("docs/results"), stale)
    assert f"ran at commit `{a}`" in page and f"last changed at commit `{b}`" in page
    assert "`uv run sequela study studies/old.yaml`" in page.split("Stale report")[1]
    assert "Stale report" not in pages.render(fresh, Path("docs/results"), None)


def test_a_code_change_undone_since_the_report_leaves_it_current(history):
    code = pages.code_deps(history / "dvc.yaml")
    (history / "src/train.py").write_text("0\n")
    recorded = commit(history, "the report's code")
    (history / "src/train.py").write_text("2\n")
    commit(history, "a change")
    (history / "src/train.py").write_text("0\n")
    commit(history, "the change undone")
    assert pages.staleness(study(history, "undone", recorded), history, code) is None


def test_an_edit_to_comments_or_docstrings_only_leaves_a_report_current(history):
    code = pages.code_deps(history / "dvc.yaml")
    (history / "src/train.py").write_text('"""Train."""\n\ndef f(x):\n    return x + 1\n')
    recorded = commit(history, "the report's code")
    (history / "src/train.py").write_text(
        '"""Train a model."""\n\n\ndef f(x):  # one more\n    """The next one."""\n    return x + 1\n'
    )
    commit(history, "words only")
    assert pages.staleness(study(history, "words", recorded), history, code) is None
    (history / "src/train.py").write_text('"""Train a model."""\n\n\ndef f(x):\n    return x + 2\n')
    changed = commit(history, "the code")
    assert pages.staleness(study(history, "words", recorded), history, code) == pages.Stale(
        recorded, changed, ("src/train.py",)
    )
    (history / "src/train.py").write_text('"""Train a model, once more."""\n\n\ndef f(x):\n    return x + 2\n')
    commit(history, "words again")
    # the banner names the commit that changed the code, not the later one that changed its words
    assert pages.staleness(study(history, "words", recorded), history, code).changed == changed


def test_without_the_history_no_banner_is_drawn(history, tmp_path_factory):
    code = pages.code_deps(history / "dvc.yaml")
    commit(history, "A")
    with pytest.raises(pages.NoHistory, match="lacks commit 0123abc"):  # a shallow clone, say
        pages.staleness(study(history, "gone", "0123abc"), history, code)
    bare = tmp_path_factory.mktemp("no-git")
    with pytest.raises(pages.NoHistory, match="not a git checkout"):
        pages.staleness(study(bare, "s", "0123abc"), bare, code)
    assert pages.staleness(pages.default_study(Path("reports")), history, code) is None  # no run.json


def test_the_pages_stage_is_skipped_by_a_dvc_repro_with_nothing_changed(tmp_path):
    """The stage reads git as it runs, but git is no dep of it: with nothing changed it is not rerun."""
    definition = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["pages"]
    assert "always_changed" not in definition and not any(".git" in d for d in definition["deps"])
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"pages": definition}}))
    for dep in definition["deps"]:
        source = ROOT / dep
        if dep.startswith(("src/", "stages/")):
            (tmp_path / dep).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, tmp_path / dep)
        else:
            (tmp_path / dep).mkdir(parents=True, exist_ok=True)
            (tmp_path / dep / ".keep").write_text("")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def dvc(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "dvc", *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    git(tmp_path, "init", "-q")
    dvc("init", "-q")
    dvc("config", "core.analytics", "false")
    commit(tmp_path, "init")
    assert "Running stage 'pages'" in dvc("repro")
    assert (tmp_path / "docs/results/findings.md").is_file()
    commit(tmp_path, "pages")
    again = dvc("repro")
    assert "Running stage" not in again and "didn't change, skipping" in again


def test_the_code_of_a_stage_with_no_cell_under_the_studys_params_is_not_its_code(tmp_path):
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "train": {"matrix": {"dataset": "${grid.datasets}"}, "cmd": "x", "deps": ["stages/train.py"]},
                    "external": {
                        "matrix": {"name": "${external.cells}"},
                        "cmd": "x",
                        "deps": ["src/sequela/external.py"],
                    },
                    "pages": {"cmd": "x", "deps": ["src/sequela/pages.py"]},
                }
            }
        )
    )
    ran_with = {"grid": {"datasets": ["digits"]}, "external": {"cells": []}}
    assert pages.code_deps(tmp_path / "dvc.yaml", ran_with) == ["stages/train.py"]
    assert pages.code_deps(tmp_path / "dvc.yaml") == ["src/sequela/external.py", "stages/train.py"]


def test_findings_show_the_benign_condition_beside_the_pooled_rows(tmp_path):
    from sequela.report.claims import BENIGN_SCOPE, benign_claim

    benign = benign_claim()
    write(
        tmp_path / "studies/new/tables/claims.csv",
        NEW,
        [new_row(benign, "supported", -0.004, "[-0.010, 0.002]", scope=BENIGN_SCOPE)],
    )
    body = {line.split(" | ")[0][2:]: line for line in pages.findings(tmp_path, COLUMNS[:1]).splitlines()}
    assert body[benign.text].endswith("| exploratory | ✔ -0.004 [-0.010, 0.002], n = 3 |")


def test_the_comparison_page_puts_each_published_direction_against_the_rows_that_test_it(tmp_path):
    from sequela import comparison

    in_place, ftsam = PAPER[1], next(c for c in PAPER if c.text.startswith("FT-SAM leaves"))
    write(
        tmp_path / "studies/gtsrb/tables/claims.csv",
        NEW,
        [
            new_row(in_place, "supported", 0.7, "[0.600, 0.800]", dataset="gtsrb", scope="blended"),
            new_row(in_place, "inconclusive", 0.3, "[-0.100, 0.700]", dataset="gtsrb"),  # pooled: not this row
            new_row(ftsam, "contradicted", 0.1, "[0.050, 0.150]", dataset="gtsrb", scope="blended"),
        ],
    )
    studies = (("GTSRB", "gtsrb", "standalone", "gtsrb"), ("absent", "absent", "standalone", "gtsrb"))
    page = comparison.page(tmp_path, studies)
    blended = page[page.index("leaves Blended in place") :].split("\n## ")[0]
    assert "CIFAR-10, PreAct-ResNet-18" in blended and "[absent](absent.md) (not run yet)" in blended
    rows = {line.split(" | ")[0][2:]: line for line in blended.splitlines() if line.startswith("| FT")}
    assert rows["FT leaves the backdoor in place"] == (
        "| FT leaves the backdoor in place | blended | ✔ +0.700 [0.600, 0.800], n = 3 | – not run |"
    )
    assert "✘ +0.100 [0.050, 0.150], n = 3" in rows["FT-SAM leaves a lower ASR than FT"]
    # LF was not run in this study: its direction's rows say so
    lf = page[page.index("low-frequency trigger") :].split("\n## ")[0]
    assert "| lf | – not run | – not run |" in lf
    assert "`ablation-poison_rate` of [gtsrb-poison-rate](gtsrb-poison-rate.md)" in page
