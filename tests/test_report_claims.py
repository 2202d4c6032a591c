"""The claims table's rules: floors, unplanted attacks, balanced pooling, the Holm family, the margin."""

import math

import pandas as pd
import pytest
from scipy.stats import t

from sequela.report import claims
from sequela.report.stats import holm

POOLED = "all attacks (seed means)"
SFT_FT = "SFT leaves a lower ASR than FT"


def cells(attack: str, seed: int, **models: dict) -> list[dict]:
    return [
        {"paradigm": "standalone", "dataset": "digits", "attack": attack, "defense": model, "seed": seed, **figures}
        for model, figures in models.items()
    ]


def two_attacks(lifts: dict | None = None) -> pd.DataFrame:
    """BadNets and Blended x three seeds, every backdoor planted (lift 1.0) unless `lifts` says
    otherwise; SFT's ASR is 0.3 below FT's for BadNets and 0.5 above it for Blended, in every seed."""
    rows = []
    for attack, d in (("badnets", -0.3), ("blended", 0.5)):
        for seed, noise in zip((0, 1, 2), (0.0, 0.01, -0.01)):
            lift = (lifts or {}).get((attack, seed), 1.0)
            rows += cells(
                attack,
                seed,
                clean={"asr": 0.0, "ca": 0.97},
                none={"asr": lift, "ca": 0.95},
                ft={"asr": 0.4 + noise, "ca": 0.94},
                sft={"asr": 0.4 + noise + d, "ca": 0.95},
            )
    return pd.DataFrame(rows)


def by(rows: list[dict], claim: str, scope: str = POOLED) -> dict:
    return next(r for r in rows if r["claim"].startswith(claim) and r["scope"] == scope)


def test_ft_leaves_the_backdoor_is_judged_against_the_triggers_clean_floor():
    # A clean model already sends 0.3 of the triggered images to the target: FT's 0.7 is only 0.4
    # above that floor, short of the 0.5 planting margin, though 0.7 - 0 would clear it.
    rows = []
    for seed, noise in zip((0, 1, 2), (0.0, 0.01, -0.01)):
        rows += cells(
            "blended",
            seed,
            clean={"asr": 0.3, "ca": 0.97},
            none={"asr": 1.0, "ca": 0.95},
            ft={"asr": 0.7 + noise, "ca": 0.94},
            sft={"asr": 0.2, "ca": 0.95},
        )
    row = by(claims.claims_rows(pd.DataFrame(rows), mia="x"), "FT leaves the backdoor in place", "blended")
    assert row["compared"] == "asr: ft - clean" and row["mean diff"] == pytest.approx(0.4)
    assert row["verdict"] == "contradicted"
    assert "more than 0.5 above the trigger's clean floor" in row["claim"]
    # No claim reads an ASR on its own: every ASR claim is a difference of two models of the seed.
    assert all(c.b in ("ft", "clean", "ep", "none") for c in claims.claims("x"))


def test_sbl_survival_subtracts_each_attacks_floor():
    rows = []
    for seed, noise in zip((0, 1, 2), (0.0, 0.01, -0.01)):
        rows += cells("badnets", seed, clean={"asr": 0.0}, none={"asr": 1.0}, ft={"asr": 0.3 + noise})
        rows += cells("sbl", seed, clean={"asr": 0.2}, none={"asr": 1.0}, ft={"asr": 0.9 + noise})
    row = claims.survival_rows(pd.DataFrame(rows))[0]
    assert row["mean diff"] == pytest.approx(0.4) and row["family"] == "exploratory"


def test_an_attack_unplanted_in_one_seed_gets_no_verdict_in_its_own_row_and_names_the_cell():
    rows = claims.claims_rows(two_attacks({("blended", 1): 0.3}), mia="x")
    blended, badnets = by(rows, SFT_FT, "blended"), by(rows, SFT_FT, "badnets")
    assert blended["verdict"] == "not planted" and blended["excluded (not planted)"] == "blended/1"
    assert blended["n"] == 3  # still printed over every seed, for reading
    assert badnets["verdict"] == "supported" and badnets["excluded (not planted)"] == ""


def test_pooling_drops_an_attack_unplanted_in_one_seed_from_every_seed_mean():
    df = two_attacks({("blended", 2): 0.2})
    pooled = by(claims.claims_rows(df, mia="x"), SFT_FT)
    # Only BadNets in every seed: -0.3 each. Dropping Blended only from seed 2 would give seeds 0
    # and 1 the mean (-0.3 + 0.5) / 2 = 0.1 and seed 2 -0.3.
    assert pooled["n"] == 3 and pooled["mean diff"] == pytest.approx(-0.3)
    assert pooled["attacks left out"] == "blended (not planted)" and pooled["excluded (not planted)"] == "blended/2"
    diffs = claims.differences(df, claims.claims("x")[0])
    means, left_out, _ = claims.pooled_over_attacks(diffs, {("blended", 2)}, [0, 1, 2])
    assert list(means) == pytest.approx([-0.3] * 3) and left_out == ["blended (not planted)"]
    # with every cell planted both attacks enter every seed mean
    assert by(claims.claims_rows(two_attacks(), mia="x"), SFT_FT)["mean diff"] == pytest.approx(0.1)


def test_holm_matches_a_hand_computation():
    steps = holm([0.01, 0.04, 0.03, math.nan, 0.005])
    assert steps[3] is None  # no test, not counted: m = 4
    # sorted: 0.005 < 0.05/4, 0.01 < 0.05/3, 0.03 >= 0.05/2 stops the procedure
    expected = {
        4: (0.02, True, 0.05 / 4, 1, 1),
        0: (0.03, True, 0.05 / 3, 2, 2),
        2: (0.06, False, 0.05 / 2, 3, 3),
        1: (0.06, False, 0.05 / 2, 4, 3),
    }
    for i, want in expected.items():
        s = steps[i]
        assert (s.p_adjusted, s.rejected, s.alpha, s.step, s.decided, s.size) == pytest.approx((*want, 4))
    # A later p below its own step's level is not rejected once an earlier step failed.
    first, second = holm([0.03, 0.04])
    assert not first.rejected and not second.rejected and second.p_adjusted == pytest.approx(0.06)


def one_attack() -> pd.DataFrame:
    """BadNets x three seeds: SFT - FT ASR = -0.15, -0.2, -0.25 (unadjusted p = 0.0202); FT's lift
    over the floor 0.3, 0.7, 0.5 (mean on the bound 0.5); SFT - backdoored CA 0.05, -0.09, -0.02
    (mean on the bound -0.02)."""
    rows = []
    for seed, (d, ft, ca) in enumerate([(-0.15, 0.3, 0.05), (-0.2, 0.7, -0.09), (-0.25, 0.5, -0.02)]):
        rows += cells(
            "badnets",
            seed,
            clean={"asr": 0.0, "ca": 0.97},
            none={"asr": 1.0, "ca": 0.9},
            ft={"asr": ft, "ca": 0.9},
            sft={"asr": ft + d, "ca": 0.9 + ca},
        )
    return pd.DataFrame(rows)


def test_confirmatory_rows_are_holm_adjusted_and_print_the_interval_of_their_step():
    rows = claims.claims_rows(one_attack(), mia="x")
    pooled, alone = by(rows, SFT_FT), by(rows, SFT_FT, "badnets")
    tstat = 0.2 / (0.05 / math.sqrt(3))
    p = 1 - tstat / math.sqrt(tstat**2 + 2)  # two-sided p of a t with 2 degrees of freedom
    assert pooled["p"] == pytest.approx(p, abs=1e-4) and alone["p"] == pytest.approx(p, abs=1e-4)
    # The family holds three claims; the other two have p = 1, so this one is step 1 of 3 at
    # 0.05 / 3 < 0.0202: the family-wise verdict is inconclusive, the unadjusted one supported.
    assert pooled["family"] == "confirmatory" and pooled["p Holm"] == pytest.approx(3 * p, abs=1e-4)
    assert pooled["CI level"] == "98.33% (Holm step 1 of 3)" and pooled["verdict"] == "inconclusive"
    assert alone["family"] == "exploratory" and alone["CI level"] == "95% (unadjusted)"
    assert alone["verdict"] == "supported"
    half = t.ppf(1 - 0.05 / 6, 2) * 0.05 / math.sqrt(3)
    assert pooled["CI"] == f"[{-0.2 - half:.3f}, {-0.2 + half:.3f}]"
    # the steps after the stopping one print the stopping step's level
    ft = by(rows, "FT leaves the backdoor in place")
    assert ft["CI level"] == "98.33% (Holm step 1 of 3)" and ft["p Holm"] == pytest.approx(1.0)


def test_interval_and_verdict_agree_in_every_confirmatory_row():
    for df in (one_attack(), two_attacks(), two_attacks({("blended", 2): 0.2})):
        claim_by_text = {c.text: c for c in claims.claims("x")}
        for row in claims.claims_rows(df, mia="x"):
            if row["family"] != "confirmatory":
                continue
            low, high = (float(x) for x in row["CI"].strip("[]").split(", "))
            bound = claim_by_text[row["claim"]].bound
            assert (row["verdict"] != "inconclusive") == (not low <= bound <= high), row


def retuned() -> pd.DataFrame:
    """BadNets and SBL x three seeds with P-ASR, EP and FST: rows of every kind of claim."""
    rows = []
    for attack in ("badnets", "sbl"):
        for seed, noise in zip((0, 1, 2), (0.0, 0.02, -0.02)):
            rows += cells(
                attack,
                seed,
                none={"asr": 1.0, "ca": 0.9, "p_asr": 1.0},
                clean={"asr": 0.0, "ca": 0.9, "p_asr": 0.1 + noise},
                ft={"asr": 0.4 + noise, "ca": 0.9, "p_asr": 0.6},
                sft={"asr": 0.1 + noise, "ca": 0.9, "p_asr": 0.2},
                fst={"asr": 0.2 + noise, "ca": 0.9, "p_asr": 0.6 + noise},
                ep={"asr": 0.0, "ca": 0.9, "p_asr": 0.2 + noise},
            )
    return pd.DataFrame(rows)


def test_only_the_papers_claims_pooled_are_confirmatory():
    df = retuned()
    rows = claims.claims_rows(df, mia="x") + claims.survival_rows(df)
    paper = {c.text for c in claims.claims("x")[:7]}
    for row in rows:
        confirmatory = row["claim"] in paper and row["scope"] == POOLED
        assert row["family"] == ("confirmatory" if confirmatory else "exploratory"), row
        assert (row["CI level"] == "95% (unadjusted)") == (not confirmatory)
        assert (row["p Holm"] == "–") == (not confirmatory)
    assert {r["claim"] for r in rows if r["family"] == "confirmatory"} == {
        SFT_FT,
        claims.claims("x")[1].text,
        claims.claims("x")[2].text,
    }


def test_the_planting_margin_decides_which_cells_are_left_out():
    # blended/1's lift is 0.4 and badnets/2's 0.6
    df = two_attacks({("blended", 1): 0.4, ("badnets", 2): 0.6})
    assert claims.unplanted(df, margin=0.3) == set()
    assert claims.unplanted(df, margin=0.5) == {("blended", 1)}
    assert claims.unplanted(df, margin=0.7) == {("blended", 1), ("badnets", 2)}
    rows = claims.sensitivity_rows(df, mia="x")
    assert all(r["planting margin"] in (0.3, 0.5, 0.7) and "family" not in r for r in rows)
    sft = [r for r in rows if r["claim"] == SFT_FT]
    assert [(r["planting margin"], r["excluded (not planted)"], r["attacks left out"]) for r in sft] == [
        (0.3, "", ""),
        (0.5, "blended/1", "blended (not planted)"),
        (0.7, "badnets/2, blended/1", "badnets (not planted), blended (not planted)"),
    ]
    assert sft[2]["verdict"] == "not planted" and sft[0]["mean diff"] == pytest.approx(0.1)
    # "in place" is judged against the same margin
    ft = [r["claim"] for r in rows if r["compared"] == "asr: ft - clean"]
    assert [c.split("more than ")[1][:3] for c in ft] == ["0.3", "0.5", "0.7"]


def test_the_report_writes_the_claims_and_the_sensitivity_tables(tmp_path):
    df = two_attacks()
    rows = claims.write_tables(df, df, pd.DataFrame(), {}, tmp_path)
    assert rows and all(
        (tmp_path / f"{stem}.{ext}").is_file()
        for stem in ("claims", "claims-margin-sensitivity")
        for ext in ("md", "csv", "tex")
    )
    header = (tmp_path / "claims.md").read_text().splitlines()[2]
    assert "CI level" in header and "family" in header and "p Holm" in header


def test_the_headline_carries_each_pooled_claims_mean_and_none_for_an_unplanted_table():
    from sequela.report import summary

    frame = two_attacks()
    rows = claims.claims_rows(frame, mia="x")
    headline = summary.headline(summary.nest(frame), rows, "digits", ["badnets", "blended"])
    assert headline["claims"]["sft_minus_ft_asr"] == by(rows, SFT_FT)["mean diff"]
    assert headline["claims"]["ft_minus_clean_asr"] == by(rows, "FT leaves the backdoor")["mean diff"]
    # Both attacks unplanted in one seed: no pooled claim has cells, so the headline has no claim.
    bare = two_attacks({("badnets", 1): 0.1, ("blended", 2): 0.1})
    rows = claims.claims_rows(bare, mia="x")
    assert summary.headline(summary.nest(bare), rows, "digits", ["badnets", "blended"])["claims"] == {}


def benign_frame(changes: list[float]) -> pd.DataFrame:
    """The benign condition of three seeds: the clean model's CA and SFT's CA `change` below it."""
    rows = []
    for seed, change in enumerate(changes):
        ca = 0.9 + 0.01 * seed
        key = {"paradigm": "standalone", "dataset": "d", "attack": "benign", "seed": seed}
        rows += [{**key, "defense": "none", "ca": ca}, {**key, "defense": "sft", "ca": ca + change}]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "changes, expected",
    [
        ([-0.001, -0.002, 0.0], "supported"),  # every seed well inside the 0.02 budget
        ([-0.05, -0.06, -0.055], "contradicted"),  # every seed far beyond it
        ([-0.001, -0.05, 0.01], "inconclusive"),  # the seeds disagree
    ],
)
def test_the_benign_claim_judges_sfts_ca_change_on_the_clean_model_against_the_margin(changes, expected):
    (row,) = claims.benign_rows(benign_frame(changes))
    assert row["verdict"] == expected and row["family"] == "exploratory" and row["n"] == 3
    assert row["mean diff"] == pytest.approx(sum(changes) / 3, abs=1e-3)


def test_the_benign_claim_is_left_out_without_sft():
    df = benign_frame([-0.01, -0.01, -0.01])
    assert claims.benign_rows(df[df["defense"] != "sft"]) == []
