"""The report's DVC plot data (reports/plots/) and the results pages (docs/results/)."""

import json
from pathlib import Path

import pandas as pd

from sequela import pages
from sequela.report import plot_data


def test_defense_epochs_weigh_every_seed_the_same():
    rows = [  # seed 0 has two attacks, seed 1 one: the mean is over seed means, not over cells
        {"dataset": "d", "attack": "a", "defense": "ft", "seed": 0, "epoch": 0, "asr": 1.0, "ca": 0.9},
        {"dataset": "d", "attack": "b", "defense": "ft", "seed": 0, "epoch": 0, "asr": 0.0, "ca": 0.9},
        {"dataset": "d", "attack": "a", "defense": "ft", "seed": 1, "epoch": 0, "asr": 1.0, "ca": 0.7},
        {"dataset": "d", "attack": "a", "defense": "nc", "seed": 1, "epoch": 0, "asr": 0.3, "ca": 0.7},
    ]
    out = plot_data.defense_epochs(pd.DataFrame(rows))
    assert list(out.columns) == ["epoch", "ft_asr", "ft_ca"]  # the baselines are not FT vs SFT
    assert out.loc[0, "ft_asr"] == 0.75 and abs(out.loc[0, "ft_ca"] - 0.8) < 1e-12


def test_a_sweep_is_sorted_by_value_with_one_column_per_model_and_figure():
    rows = [
        {"value": v, "defense": m, "seed": s, "asr": v * (m == "sft"), "ca": 0.9}
        for v in (1.0, 0.1, 0.5)
        for m in ("none", "sft")
        for s in (0, 1)
    ]
    out = plot_data.sweep(pd.DataFrame(rows))
    assert list(out["value"]) == [0.1, 0.5, 1.0]
    assert list(out.columns) == ["value", "none_asr", "none_ca", "sft_asr", "sft_ca"]
    assert list(out["sft_asr"]) == [0.1, 0.5, 1.0]


def test_a_page_renders_the_reports_tables_and_provenance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("studies").mkdir()
    Path("studies/ran.yaml").write_text("description: a study that ran\nset: {grid.seeds: [0]}\n")
    Path("studies/later.yaml").write_text("description: one that did not\nset: {grid.seeds: [0]}\n")
    tables = Path("reports/studies/ran/tables")
    tables.mkdir(parents=True)
    (tables / "claims.md").write_text("Claims caption.\n\n| a |\n|:--|\n| 1 |\n")
    (tables / "standalone.md").write_text("Standalone caption.\n\n| b |\n|:--|\n| 2 |\n")
    run = {"commit": "abc1234", "date": "2026-01-02", "machine": "a CPU, 2 cores", "threads": "1", "seconds": 600}
    Path("reports/studies/ran/run.json").write_text(json.dumps(run))
    later, ran = pages.named_studies(Path("studies"), Path("reports"))
    page = pages.render(ran, Path("docs/results"))
    assert page.index("## Standalone") < page.index("## The paper's claims")  # TITLES' order, not the name's
    assert "| 2 |" in page and "`abc1234` on 2026-01-02" in page and "10 min" in page
    assert "uv run sequela study studies/ran.yaml" in page
    assert "Not run yet" in pages.render(later, Path("docs/results"))
    index = pages.index([ran, later])
    assert "[later](later.md)" in index and "not run yet" in index and "ran at `abc1234`" in index
    # A report rebuilt from the same cells by later report code names both commits; no time is made up.
    run = {"commit": "abc1234", "report_commit": "def5678", "date": "2026-01-02", "machine": "a CPU", "threads": "1"}
    Path("reports/studies/ran/run.json").write_text(json.dumps(run))
    page = pages.render(pages.named_studies(Path("studies"), Path("reports"))[1], Path("docs/results"))
    assert "`abc1234`" in page and "report stage of commit `def5678`" in page and " min." not in page
