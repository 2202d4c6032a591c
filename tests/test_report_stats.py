"""The report's statistics: mean ± sd over seeds, paired intervals and the verdict rule of a claim."""

import math
import statistics

import pandas as pd
import pytest

from sequela.report import claims, summary
from sequela.report.stats import fmt, mean_sd, paired, verdict


def test_mean_sd_is_the_sample_statistics_and_skips_missing_values():
    assert mean_sd([0.1, 0.2, 0.6, float("nan"), None]) == pytest.approx((0.3, statistics.stdev([0.1, 0.2, 0.6]), 3))
    mean, sd, n = mean_sd([0.5])
    assert (mean, n) == (0.5, 1) and math.isnan(sd)
    assert fmt(0.5, float("nan")) == "0.500" and fmt(0.25, 0.05) == "0.250 ± 0.050"


def test_paired_interval_is_the_t_interval_of_the_differences():
    d = [-0.30, -0.25, -0.35, -0.28]
    p = paired(d)
    half = 3.182446305284263 * statistics.stdev(d) / 2  # t(0.975, 3) x sd / sqrt(4)
    assert p.n == 4 and p.mean == pytest.approx(statistics.mean(d))
    assert (p.low, p.high) == pytest.approx((p.mean - half, p.mean + half))


@pytest.mark.parametrize(
    "diffs, below, above, expected",
    [
        ([-0.3, -0.25, -0.35], 0.0, None, "supported"),  # wholly below the bound
        ([0.3, 0.25, 0.35], 0.0, None, "contradicted"),  # wholly above it
        ([-0.3, 0.2, 0.05], 0.0, None, "inconclusive"),  # straddles it
        ([0.01, 0.0, 0.005], None, -0.02, "supported"),  # "CA drop < 0.02"
        ([-0.3], 0.0, None, "inconclusive"),  # one pair has no interval
    ],
)
def test_verdict_needs_the_whole_interval_on_one_side(diffs, below, above, expected):
    assert verdict(paired(diffs), below, above) == expected


def frame() -> pd.DataFrame:
    """Two attacks x three seeds; SFT's ASR is 0.3 below FT's in every cell."""
    rows = []
    for attack in ("badnets", "blended"):
        for seed, noise in zip((0, 1, 2), (0.0, 0.01, -0.01)):
            for model, asr, ca in (
                ("none", 1.0, 0.95),
                ("ft", 0.6 + noise, 0.93),
                ("sft", 0.3 + noise, 0.95),
                ("clean", 0.0, 0.97),
            ):
                rows.append(
                    {
                        "paradigm": "standalone",
                        "dataset": "digits",
                        "attack": attack,
                        "defense": model,
                        "seed": seed,
                        "asr": asr,
                        "ca": ca + noise / 10,
                    }
                )
    return pd.DataFrame(rows)


def test_claims_pair_models_of_the_same_seed_and_pool_attacks_within_a_seed():
    rows = claims.claims_rows(frame(), mia="mia_loss_auc_unseen")
    first = [r for r in rows if r["claim"] == "SFT leaves a lower ASR than FT"]
    pooled = first[0]
    # the seed is the unit: two attacks x three seeds are three per-seed means, not six pairs
    assert pooled["scope"].startswith("all attacks") and pooled["n"] == 3
    assert pooled["mean diff"] == pytest.approx(-0.3) and pooled["verdict"] == "supported"
    assert pooled["excluded (not planted)"] == ""
    assert [r["scope"] for r in first[1:]] == ["badnets", "blended"] and all(r["n"] == 3 for r in first[1:])
    # No membership figure in the frame: that claim is left out, not judged on nothing.
    assert not any("Membership" in r["claim"] for r in rows)


def test_summary_keeps_each_seed_beside_mean_sd_and_n():
    nested = summary.nest(frame())
    asr = nested["standalone"]["digits"]["badnets"]["ft"]["asr"]
    assert asr["seeds"] == {"0": 0.6, "1": 0.61, "2": 0.59} and asr["n"] == 3
    assert asr["mean"] == pytest.approx(0.6) and asr["sd"] == pytest.approx(0.01)


def test_pooling_is_over_seed_means_so_attacks_do_not_add_replicates():
    # Per seed, the two attacks disagree in sign; their mean is what the seed says. With the cells
    # counted as independent pairs the interval would be narrower than the seeds warrant.
    rows = []
    for seed, (a, b) in enumerate([(-0.4, 0.2), (-0.5, 0.3), (-0.3, 0.25)]):
        for attack, d in (("badnets", a), ("blended", b)):
            for model, asr in (("none", 1.0), ("clean", 0.0), ("ft", 0.6), ("sft", 0.6 + d)):
                rows.append(
                    {
                        "paradigm": "standalone",
                        "dataset": "digits",
                        "attack": attack,
                        "defense": model,
                        "seed": seed,
                        "asr": asr,
                        "ca": 0.9,
                    }
                )
    pooled = claims.claims_rows(pd.DataFrame(rows), mia="x")[0]
    per_seed = [(-0.4 + 0.2) / 2, (-0.5 + 0.3) / 2, (-0.3 + 0.25) / 2]
    assert pooled["n"] == 3 and pooled["mean diff"] == pytest.approx(sum(per_seed) / 3, abs=1e-3)


def test_a_cell_whose_backdoor_was_never_planted_is_left_out_of_the_pooled_row_and_named():
    df = frame()
    # blended, seed 1: the backdoored model's ASR only 0.3 above the clean model's floor
    df.loc[(df["attack"] == "blended") & (df["seed"] == 1) & (df["defense"] == "none"), "asr"] = 0.3
    pooled = claims.claims_rows(df, mia="x")[0]
    assert pooled["excluded (not planted)"] == "blended/1" and pooled["n"] == 3
    per_attack = [r for r in claims.claims_rows(df, mia="x") if r["scope"] == "blended"][0]
    assert per_attack["n"] == 3  # the per-attack rows keep every cell


def test_a_cell_that_failed_the_attackers_own_check_is_left_out_though_its_lift_is_large():
    df = frame()
    df["attacker_check"] = None
    for attack, seed, last in (("badnets", 0, 0.97), ("blended", 2, 0.88)):  # blended/2 missed its 0.95
        row = (df["attack"] == attack) & (df["seed"] == seed) & (df["defense"] == "none")
        df.loc[row, "attacker_check"] = pd.Series(
            [[{"held_out_asr": 0.5}, {"held_out_asr": last}]], index=df.index[row]
        )
    pooled = claims.claims_rows(df, mia="x", min_asr={"badnets": 0.95, "blended": 0.95})[0]
    assert pooled["excluded (not planted)"] == "blended/2"
    lenient = claims.claims_rows(df, mia="x", min_asr={"badnets": 0.95, "blended": 0.85})[0]
    assert lenient["excluded (not planted)"] == ""
    # without the targets (the paradigms' cells) only the lift rule applies
    assert claims.claims_rows(df, mia="x")[0]["excluded (not planted)"] == ""


def retuned_frame() -> pd.DataFrame:
    """BadNets and SBL x three seeds: P-ASR after FT 0.6 (clean 0.1, EP 0.2); FST's ASR 0.2 below FT's;
    SBL's ASR after FT 0.5 above BadNets'."""
    rows = []
    for attack, lift in (("badnets", 0.0), ("sbl", 0.5)):
        for seed, noise in zip((0, 1, 2), (0.0, 0.02, -0.02)):
            for model, asr, p_asr in (
                ("none", 1.0, 1.0),
                ("clean", 0.0, 0.1 + noise),
                ("ft", 0.4 + lift + noise, 0.6),
                ("fst", 0.2 + lift + noise, 0.6 + noise),
                ("ep", 0.0, 0.2 + noise),
            ):
                rows.append(
                    {
                        "paradigm": "standalone",
                        "dataset": "digits",
                        "attack": attack,
                        "defense": model,
                        "seed": seed,
                        "asr": min(asr, 1.0),
                        "ca": 0.9,
                        "p_asr": p_asr,
                    }
                )
    return pd.DataFrame(rows)


def test_retuning_claims_compare_each_purifier_with_the_clean_model_and_with_ep():
    rows = {(r["claim"], r["scope"]): r for r in claims.claims_rows(retuned_frame(), mia="x")}
    faster = rows[
        ("After FT the model relearns the backdoor faster than the clean model (P-ASR)", "all attacks (seed means)")
    ]
    assert faster["compared"] == "p_asr: ft - clean" and faster["verdict"] == "supported" and faster["n"] == 3
    no_faster = rows[
        (
            "After FT the model relearns the backdoor no faster than after EP (P-ASR at most 0.05 above)",
            "all attacks (seed means)",
        )
    ]
    assert no_faster["mean diff"] == pytest.approx(0.4, abs=1e-3) and no_faster["verdict"] == "contradicted"
    # EP is the reference: it is never the `a` side of a claim.
    assert not any(r["compared"].split(": ")[1].startswith("ep ") for r in rows.values())
    assert rows[("FST leaves a lower ASR than FT", "all attacks (seed means)")]["verdict"] == "supported"
    # A purifier the grid did not run (SAU) has no rows.
    assert not any("SAU" in claim for claim, _ in rows)


def test_sbl_survival_pairs_the_same_purifier_on_sbl_and_badnets_by_seed():
    rows = {r["claim"]: r for r in claims.survival_rows(retuned_frame())}
    ft = rows["SBL's backdoor survives FT better than BadNets'"]
    assert ft["n"] == 3 and ft["mean diff"] == pytest.approx(0.5) and ft["verdict"] == "supported"
    assert set(rows) == {
        "SBL's backdoor survives FT better than BadNets'",
        "SBL's backdoor survives FST better than BadNets'",
    }
