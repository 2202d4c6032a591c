"""The real `dvc repro` on a tiny grid in a temporary git repository.

Checks: every stage runs and writes its outputs; a second run skips every stage; a forced rerun
with the same seed gives byte-identical results (wall-clock `seconds` aside); two seeds give
different models and the summary's mean and sd are those of the per-seed values; a change of
defense.epochs leaves prepare, clean, poison and train stages untouched; adding a seed adds only
that seed's stages; a grid pushed with its run-cache is restored, not recomputed, in another clone."""

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import without_seconds

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, stdout_only: bool = False) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout if stdout_only else result.stdout + result.stderr


def dvc(*args: str, cwd: Path, stdout_only: bool = False) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd, stdout_only)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("stages", "src", "studies", "reports/studies"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["grid"] = {"seeds": [0, 1], "datasets": ["digits"], "attacks": ["badnets"], "defenses": ["ft", "sft"]}
    params["recipe"]["digits"].update(epochs=8)  # a second each on digits; a backbone that transfers
    params["defense"]["epochs"] = 1
    # Three ablation sweeps: a defend-only one with the main grid's own value (0.5) listed, and the
    # attacker's poison rate and victim's rounds, which plant and train their own model.
    params["ablation"].update(
        attacks=["badnets"],
        points=["clean_fraction-1.0", "clean_fraction-0.5", "poison_rate-0.05", "victim_rounds-2"],
    )
    params["sequela"]["reinject"].update(draws=1, epochs=1)
    # The sequela measures' own properties are tested in test_sequela.py; here each runs, briefly.
    params["sequela"]["retune"].update(epochs=1)
    params["sequela"]["pgd"].update(eps=[0.0313725], steps=3, n=50)
    params["sequela"]["membership"]["mlp"].update(epochs=100)
    # The paradigms' smoke cells, each just long enough to plant: the transfer head 4 epochs; for the encoder,
    # a narrower encoder, 2 SimCLR epochs, a shorter head.
    params["transfer"].update(
        upstream=["digits"], downstream=["digits-mirror"], attacks=["badnets"], head={"epochs": 4, "lr": 0.01}
    )
    params["encoder"].update(pretrain=["digits"], downstream=["digits"])
    params["encoder"]["model"].update(width=16)
    params["encoder"]["simclr"].update(epochs=2)
    params["encoder"]["badencoder"].update(epochs=12, lr=[0.05])  # the attacker's rate choice: test_paradigms.py
    # The user's FeatureNorm choice (two more heads per model) has its own test in test_paradigms.py.
    params["encoder"]["head"].update(epochs=60, lr=1e-3, hidden=32, standardize=True)
    # A model trained elsewhere, as an external cell: an untrained digits CNN and folders of digits.
    external_folder(repo / "external/smoke")
    params["external"].update(cells=["smoke"], targets={"smoke": 0}, batch_size=16, crop_padding=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    dvc("init", "-q", cwd=repo)
    dvc("config", "core.analytics", "false", cwd=repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], repo)
    dvc("repro", cwd=repo)
    return repo


def external_folder(root: Path) -> None:
    from PIL import Image

    from sequela import models
    from sequela.sources import loaders

    ds = loaders.load_digits(seed=0, test_fraction=0.25)
    torch.manual_seed(0)
    spec = {
        "arch": "small_cnn",
        "in_channels": 1,
        "num_classes": 10,
        "mean": [0.3],
        "std": [0.4],
        "width": 4,
        "input_shape": list(ds.image_shape),
    }
    models.save_file(models.build_from_spec(spec), spec, root / "model.safetensors")
    triggered = ds.test.x[:40].clone()
    triggered[:, :, -3:, -3:] = 255
    for role, x, y in (
        ("clean", ds.train.x[:60], ds.train.y[:60]),
        ("test", ds.test.x[:40], ds.test.y[:40]),
        ("triggered", triggered, ds.test.y[:40]),
    ):
        for row, (image, label) in enumerate(zip(x, y.tolist())):
            (root / role / f"{label:02d}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0].numpy()).save(root / role / f"{label:02d}" / f"{row:04d}.png")


MODEL = "data/standalone/digits/seed0/defended/badnets/sft/model.safetensors"
CURVE = "metrics/curves/standalone/digits/seed0/badnets-defenses/sft.tsv"


def test_repro_builds_every_output(repo):
    summary = json.loads((repo / "metrics/summary.json").read_text())
    cell = summary["standalone"]["digits"]["badnets"]
    for model in ("clean", "none", "ft", "sft"):
        assert cell[model]["ca"]["n"] == 2 and set(cell[model]["ca"]["seeds"]) == {"0", "1"}
    for model in ("none", "ft", "sft"):
        assert all(0.0 <= cell[model][k]["mean"] <= 1.0 for k in ("ca", "asr", "ra", "reinject_asr", "mia_loss_auc"))
    # the smoke backdoor is planted: far above the trigger's floor on the clean reference, every seed
    assert all(cell["none"]["asr"]["seeds"][s] > cell["clean"]["asr"]["seeds"][s] + 0.5 for s in ("0", "1")), cell
    assert (repo / MODEL).is_file()
    for name in ("standalone", "baselines", "sequela", "claims", "ablation-clean_fraction", "ablation-poison_rate"):
        for suffix in (".md", ".csv", ".tex"):
            assert (repo / "reports/tables" / f"{name}{suffix}").is_file()
    for name in (
        "curves-digits",
        "curves-baselines-digits",
        "sft-schedule",
        "ablation-clean_fraction",
        "ablation-poison_rate",
        "sequela-digits",
        "reinjection-digits",
        "ca-vs-asr-digits",
        "triggers-digits",
    ):
        assert (repo / "reports/figures" / f"{name}.png").is_file()
    for paradigm, pair, attack in (
        ("transfer", "digits-to-digits-mirror", "badnets"),
        ("encoder", "digits-to-digits", "badencoder"),
    ):
        cell = summary[paradigm][pair][attack]
        assert set(cell) == {"clean", "none", "ft", "sft"} and all(cell[m]["asr"]["n"] == 2 for m in cell)
        assert all(0.0 <= cell[m][k]["mean"] <= 1.0 for m in cell for k in ("reinject_asr", "mia_loss_auc", "pgd_acc"))
        # each paradigm's smoke backdoor reaches the user's task: far above the clean model's floor
        asr = {s: (cell["none"]["asr"]["seeds"][s], cell["clean"]["asr"]["seeds"][s]) for s in ("0", "1")}
        assert all(none > floor + 0.5 for none, floor in asr.values()), (paradigm, asr)
        for name in (paradigm, f"{paradigm}-sequela"):
            for suffix in (".md", ".csv", ".tex"):
                assert (repo / "reports/tables" / f"{name}{suffix}").is_file()
        for name in (f"curves-{paradigm}-{pair}", f"sequela-{paradigm}-{pair}"):
            assert (repo / "reports/figures" / f"{name}.png").is_file()
    # The transfer baseline ships the upstream backbone bit for bit; FT moves it.
    from safetensors.torch import load_file

    shipped = load_file(repo / "data/standalone/digits/seed0/backdoored/badnets/none/model.safetensors")
    for model, same in (("none", True), ("ft", False)):
        reused = load_file(repo / f"data/transfer/digits-to-digits-mirror/seed0/badnets/{model}/model.safetensors")
        backbone = [k for k in shipped if not k.startswith("fc.")]
        assert all(torch.equal(shipped[k], reused[k]) for k in backbone) == same, model
    external = summary["external"]["smoke"]["external"]
    assert set(external) == {"none", "ft", "sft"} and all(external[m]["ca"]["n"] == 2 for m in external)
    assert (repo / "reports/tables/external.md").is_file() and (repo / "data/external/smoke/seed1/sft").is_dir()
    claims = (repo / "reports/tables/claims.md").read_text()
    assert "transfer" in claims and "encoder" in claims
    curve = (repo / CURVE).read_text().splitlines()
    assert curve[0].split("\t") == ["epoch", "ca", "asr", "ra", "lr"] and len(curve) == 3  # epochs 0 and 1
    assert "± " in (repo / "reports/tables/standalone.md").read_text()


def test_named_plots_draw_from_the_aggregated_tsvs_and_the_pages_render_the_reports(repo):
    epochs = (repo / "reports/plots/defense-epochs.tsv").read_text().splitlines()
    assert epochs[0].split("\t") == ["epoch", "ft_asr", "ft_ca", "sft_asr", "sft_ca"] and len(epochs) == 3
    # epoch 0 of FT is the backdoored model: its ASR is the mean of the two seeds' backdoored ASRs
    summary = json.loads((repo / "metrics/summary.json").read_text())
    none = summary["standalone"]["digits"]["badnets"]["none"]["asr"]["mean"]
    assert abs(float(epochs[1].split("\t")[1]) - none) < 1e-3
    shown = json.loads(dvc("plots", "show", "--json", cwd=repo, stdout_only=True))
    for name in ("ft-vs-sft-asr", "ft-vs-sft-ca", "defenses-ca-vs-asr", "ablation-clean-fraction"):
        assert shown["data"][name][0]["content"]["data"]["values"], name
    # the tiny grid has no SFT-peak sweep: the only plot without data is that one
    assert {e["name"] for e in shown.get("errors", [])} <= {"ablation-sft-max-lr1"}, shown["errors"]
    page = (repo / "docs/results/default.md").read_text()
    assert (repo / "reports/tables/standalone.md").read_text().strip() in page
    assert "../../reports/figures/curves-digits.png" in page
    index = (repo / "docs/results/README.md").read_text()
    assert all(f"[{p.stem}]({p.stem}.md)" in index for p in (ROOT / "studies").glob("*.yaml"))


def test_an_exported_cell_defended_from_image_folders_gives_the_cells_own_figures(repo, tmp_path):
    """export -> convert -> defend: the model as a plain state dict and its data as image folders
    come back through `sequela defend` with the defend and measure stages' figures (BadNets' trigger
    is exact in 8 bits, so ASR is measured on the same images)."""
    sequela = [sys.executable, "-m", "sequela.cli.main"]
    out = tmp_path / "export"
    printed = run(
        [*sequela, "export", "--dataset", "digits", "--attack", "badnets", "--seed", "0", "--out", str(out)],
        repo,
        stdout_only=True,
    ).splitlines()
    convert, defend = [line.split()[3:] for line in printed if line.startswith("uv run sequela")]
    run([*sequela, *convert], repo)
    run([*sequela, *defend, "--params", str(repo / "params.yaml")], repo)
    report = json.loads((out / "defended/report.json").read_text())
    cell = json.loads((repo / "metrics/cells/standalone/digits/seed0/badnets-defenses.json").read_text())["defenses"]
    measured = json.loads((repo / "metrics/cells/standalone/digits/seed0/badnets-sequela.json").read_text())["models"]
    for model in ("ft", "sft"):
        for figure in ("ca", "asr", "ra"):
            assert report["models"][model][figure] == cell[model][figure], (model, figure)
    for model in ("none", "ft", "sft"):
        assert report["models"][model]["mia_loss_auc"] == measured[model]["mia_loss_auc"], model


def test_the_headline_metrics_are_the_summarys_means_in_at_most_40_numbers(repo):
    summary = json.loads((repo / "metrics/summary.json").read_text())
    headline = json.loads((repo / "metrics/headline.json").read_text())
    numbers = [v for models in headline["models"].values() for figures in models.values() for v in figures.values()]
    numbers += list(headline["claims"].values())
    assert 0 < len(numbers) <= 40
    cell = summary["standalone"]["digits"]["badnets"]
    for model in ("none", "ft", "sft"):
        for figure in ("ca", "asr"):
            assert headline["models"]["badnets"][model][figure] == cell[model][figure]["mean"]
    # A pooled claim has a number only where its attacks were planted in every seed (report/claims.py).
    checks = [
        json.loads((repo / f"metrics/cells/standalone/digits/seed{s}/badnets-none.json").read_text())["attacker_check"][
            -1
        ]["held_out_asr"]
        for s in (0, 1)
    ]
    planted = all(asr >= 0.95 for asr in checks)
    assert ("sft_minus_ft_asr" in headline["claims"]) == planted, (checks, headline["claims"])
    claims = (repo / "reports/tables/claims.csv").read_text()
    assert planted or "not planted" in claims
    shown = dvc("metrics", "show", "--json", cwd=repo, stdout_only=True)
    assert "headline.json" in shown and "summary.json" not in shown  # what dvc exp show / metrics diff show


def test_two_seeds_differ_and_the_summary_is_their_mean_and_sd(repo):
    a = (repo / MODEL).read_bytes()
    b = (repo / MODEL.replace("seed0", "seed1")).read_bytes()
    assert a != b
    summary = json.loads((repo / "metrics/summary.json").read_text())
    for model, figures in summary["standalone"]["digits"]["badnets"].items():
        for name, figure in figures.items():
            values = list(figure["seeds"].values())
            assert figure["n"] == len(values) == 2
            assert figure["mean"] == pytest.approx(statistics.mean(values), abs=1e-4), (model, name)
            assert figure["sd"] == pytest.approx(statistics.stdev(values), abs=1e-4), (model, name)
    cells = [
        json.loads((repo / f"metrics/cells/standalone/digits/seed{s}/badnets-defenses.json").read_text())
        for s in (0, 1)
    ]
    asr = summary["standalone"]["digits"]["badnets"]["sft"]["asr"]
    assert [c["defenses"]["sft"]["asr"] for c in cells] == [asr["seeds"]["0"], asr["seeds"]["1"]]


def test_the_benign_condition_defends_each_seeds_clean_reference(repo):
    """Each post-training defense runs on the clean reference (one round), from the defender's share the
    defend stage uses; its CA change is after - before, and its rows reach the summary and the tables."""
    summary = json.loads((repo / "metrics/summary.json").read_text())
    benign = summary["standalone"]["digits"]["benign"]
    assert set(benign) == {"none", "ft", "sft"}
    for s in (0, 1):
        cell = json.loads((repo / f"metrics/cells/standalone/digits/seed{s}/benign.json").read_text())
        clean = json.loads((repo / f"metrics/cells/standalone/digits/seed{s}/clean.json").read_text())
        assert cell["none"]["ca"] == pytest.approx(clean["by_rounds"][0]["ca"])  # the snapshot after one round
        defended = json.loads((repo / f"metrics/cells/standalone/digits/seed{s}/badnets-defenses.json").read_text())
        for name, figures in cell["defenses"].items():
            assert "asr" not in figures and figures["seconds"] > 0
            # the cell keeps 3 decimals of each figure, each rounded on its own
            assert figures["ca_change"] == pytest.approx(figures["ca"] - cell["none"]["ca"], abs=2e-3)
            assert figures["n_clean"] == defended["defenses"][name]["n_clean"]  # the same defender's share
            assert benign[name]["ca_change"]["seeds"][str(s)] == pytest.approx(figures["ca_change"], abs=1e-4)
    assert "| benign " in (repo / "reports/tables/baselines.md").read_text()
    assert "ΔCA" in (repo / "reports/tables/benign.md").read_text()
    assert "on a model without a backdoor" in (repo / "reports/tables/claims.md").read_text()


ABLATION = "metrics/cells/standalone/digits/seed{seed}/ablation/{point}.json"


def test_a_victim_rounds_point_trains_exactly_its_rounds_beside_the_clean_reference_trained_as_long(repo):
    for seed in (0, 1):
        point = json.loads((repo / ABLATION.format(seed=seed, point="victim_rounds-2")).read_text())
        models = point["attacks"]["badnets"]["models"]
        assert point["from_main_grid"] == [] and set(models) == {"none", "clean", "ft", "sft"}
        assert models["none"]["rounds"] == 2 and models["clean"]["rounds"] == 2
        assert models["none"]["epochs"] == 2 * 8  # the recipe's epochs, twice
        clean = json.loads((repo / f"metrics/cells/standalone/digits/seed{seed}/clean.json").read_text())
        assert models["clean"]["ca"] == pytest.approx(clean["by_rounds"][1]["ca"])  # the 2-round snapshot
    caption, rows = (repo / "reports/tables/ablation-victim_rounds.md").read_text().split("\n\n", 1)
    assert "(main)" not in rows  # the main grid trains by the budget rule: no point of this sweep
    assert (repo / "reports/figures/ablation-victim_rounds.png").is_file()


def test_an_ablation_point_equal_to_the_main_grid_is_not_computed_again(repo):
    summary = json.loads((repo / "metrics/summary.json").read_text())
    sweep = summary["ablation"]["digits"]["badnets"]["clean_fraction"]
    for seed in (0, 1):
        main = json.loads((repo / ABLATION.format(seed=seed, point="clean_fraction-0.5")).read_text())
        assert main["from_main_grid"] == ["ft", "sft"] and main["attacks"]["badnets"]["models"] == {}
        other = json.loads((repo / ABLATION.format(seed=seed, point="clean_fraction-1.0")).read_text())["attacks"]
        assert set(other["badnets"]["models"]) == {"ft", "sft"}
        # fraction 1.0: the defender holds the whole clean training split
        n_train = json.loads(
            (repo / f"data/standalone/digits/seed{seed}/backdoored/badnets/poison/meta.json").read_text()
        )["n_train"]
        assert other["badnets"]["models"]["sft"]["n_clean"] == n_train > main_n_clean(repo, seed)
    # the main grid's point is the main grid's cells, seed for seed
    for model in ("ft", "sft"):
        assert sweep["0.5"][model]["asr"]["seeds"] == summary["standalone"]["digits"]["badnets"][model]["asr"]["seeds"]
        assert sweep["1.0"][model]["asr"]["n"] == 2
    # the poison-rate sweep trains its own backdoored model: its point carries "none" too, and the
    # main grid's rate (0.1, not listed) is added from the main grid
    rates = summary["ablation"]["digits"]["badnets"]["poison_rate"]
    assert set(rates) == {"0.05", "0.1"} and set(rates["0.05"]) == {"clean", "none", "ft", "sft", "fst"}
    main = summary["standalone"]["digits"]["badnets"]
    for model in ("none", "clean"):  # the main grid's point is its own backdoored model and clean reference
        assert rates["0.1"][model]["ca"]["seeds"] == main[model]["ca"]["seeds"]
    cell = json.loads((repo / ABLATION.format(seed=0, point="poison_rate-0.05")).read_text())
    assert cell["attacks"]["badnets"]["models"]["none"]["n_poison"] < 0.06 * 1077
    table = (repo / "reports/tables/ablation-clean_fraction.md").read_text()
    assert "0.5 (main)" in table and "SFT - FT ASR" in table


def main_n_clean(repo, seed) -> int:
    """The defender's clean subset of the main grid (clean_fraction 0.5), from its defend cell."""
    cell = json.loads((repo / f"metrics/cells/standalone/digits/seed{seed}/badnets-defenses.json").read_text())
    return cell["defenses"]["sft"]["n_clean"]


def test_changing_one_sweep_value_leaves_every_other_point_up_to_date(repo):
    original = (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["ablation"]["points"][0] = "clean_fraction-0.2"  # 1.0 -> 0.2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        stale = set(json.loads(dvc("status", "--json", cwd=repo, stdout_only=True)))
    finally:
        (repo / "params.yaml").write_text(original)
    # `check` reads every param, and its output never changes: nothing downstream of it reruns for it.
    assert stale == {"ablate@digits-0-clean_fraction-0.2", "ablate@digits-1-clean_fraction-0.2", "report", "check"}, (
        stale
    )


def test_second_repro_skips_every_stage(repo):
    out = dvc("repro", cwd=repo)
    assert "Running stage" not in out
    assert "up to date" in out


def test_a_bad_value_stops_the_grid_in_the_check_stage_before_any_other(repo):
    original = (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["defense"]["nc"]["steps"] = 0  # a defense's own section: checked by its own module
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        result = subprocess.run(
            [sys.executable, "-m", "dvc", "repro", "--force"], cwd=repo, capture_output=True, text=True, env=env
        )
    finally:
        (repo / "params.yaml").write_text(original)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "defense.nc.steps = 0 is not allowed" in out
    assert [line for line in out.splitlines() if line.startswith("Running stage")] == ["Running stage 'check':"]
    dvc("repro", "check", cwd=repo)  # the module's later tests expect an up-to-date grid


def test_a_pushed_cell_is_restored_from_the_run_cache_in_another_clone(repo, tmp_path):
    # Before any forced rerun: a second run-cache entry of a stage (its cell's wall-clock seconds
    # differ) is pushed without its objects, and a clone may pick it (docs/scaling.md).
    remote = tmp_path / "remote"
    dvc("remote", "add", "--local", "-d", "scratch", str(remote), cwd=repo)
    dvc("push", "--run-cache", cwd=repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    # The clone has the code and params but neither dvc.lock nor any output: only the run-cache,
    # pulled from the remote, can give it the results without computing them.
    assert not (clone / "dvc.lock").exists() and not (clone / "data").exists()
    dvc("remote", "add", "--local", "-d", "scratch", str(remote), cwd=clone)
    # A worker's single cell first, as a coordinator collects it: `dvc repro --pull <stage>` restores
    # the stage and everything upstream of it and computes nothing.
    out = dvc("repro", "--pull", "train@digits-badnets-0", cwd=clone)
    assert not [line for line in out.splitlines() if line.startswith("Running stage")], out
    model = "data/standalone/digits/seed0/backdoored/badnets/none/model.safetensors"
    assert (clone / model).read_bytes() == (repo / model).read_bytes()
    out = dvc("repro", "--pull", cwd=clone)
    computing = [line for line in out.splitlines() if line.startswith("Running stage")]
    # The report and the pages (outputs kept in git, not in the cache) are the only stages that may
    # be recomputed: this repo never committed them.
    assert set(computing) <= {"Running stage 'report':", "Running stage 'pages':"}, computing
    assert "is cached - skipping run" in out
    for path in (MODEL, CURVE, "metrics/cells/standalone/digits/seed1/badnets-sequela.json"):
        assert (clone / path).read_bytes() == (repo / path).read_bytes(), path
    assert without_seconds(json.loads((clone / "metrics/summary.json").read_text())) == without_seconds(
        json.loads((repo / "metrics/summary.json").read_text())
    )


def test_same_seed_gives_identical_results(repo):
    summary = (repo / "metrics/summary.json").read_text()
    model = (repo / MODEL).read_bytes()
    curve = (repo / CURVE).read_bytes()
    for stage in ("defend@digits-badnets-0", "measure@digits-badnets-0", "report"):
        dvc("repro", "--force", "--single-item", stage, cwd=repo)
    # Everything but the wall-clock fields is identical.
    assert without_seconds(json.loads(summary)) == without_seconds(
        json.loads((repo / "metrics/summary.json").read_text())
    )
    assert model == (repo / MODEL).read_bytes()
    assert curve == (repo / CURVE).read_bytes()


def test_defense_epochs_change_reruns_only_defend_and_later(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["defense"]["epochs"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = set(json.loads(dvc("status", "--json", cwd=repo, stdout_only=True)))
    downstream = (
        "check",
        "defend@",
        "benign@",
        "report",
        "pages",
        "measure@",
        "external@",
        "ablate@",
        "transfer@",
        "encoder@",
    )
    assert stale and all(name.startswith(downstream) for name in stale), stale
    params["defense"]["epochs"] = 1
    params["grid"]["seeds"] = [0, 1, 2]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = set(json.loads(dvc("status", "--json", cwd=repo, stdout_only=True)))
    # seed 2's cells (the seed closes a stage name, or precedes an ablation point's value)
    assert stale and all(
        name.endswith("-2") or "-2-" in name or name in ("report", "pages", "check") for name in stale
    ), stale
