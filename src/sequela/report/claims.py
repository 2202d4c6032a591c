"""The paper's claims, each judged by a paired comparison over seeds.

The seed is the unit of replication: the cells of one seed share the defender's clean data, the
clean reference model and the initialisation, so they are not independent of each other. For one
attack, the per-seed difference (model a - model b, both from that seed's backdoored model) is the
unit. Pooled over attacks ("all attacks"), the differences are first averaged over the attacks
within each seed, and the t-interval is taken over those per-seed means: n is the number of seeds.

ASR is read against the trigger's floor: the clean reference's ASR with the same trigger in the
same seed. A claim about how much backdoor a model keeps compares its ASR with that floor (FT
leaves the backdoor in place when ASR(FT) - ASR(clean) > the planting margin, the bound planting
itself uses); a claim comparing two attacks' ASRs (SBL against BadNets) subtracts each one's floor.

Planted cells. An (attack, seed) cell is planted when two rules hold. The lift: ASR(backdoored) -
ASR(clean) >= PLANTED_MARGIN (0.5). The attacker's own check: its model reached the attack's
`attack.budget.min_asr` on its held-out split after its last round (training/attacker.py; the attacker would
not ship it otherwise, and the check reads no test image). The paradigms' cells, trained without
the attacker's check, are held to the lift alone. Neither rule was fixed before results were seen.
The lift rule with margin 0.5 was adopted in commit 38cd12e (2026-12-04), after the cells it judges
had been computed and committed: GTSRB's WaNet cells (backdoored ASR 0.182 ± 0.069, 4741a61,
2026-12-02) and the default grid's digits cells (8403dbd, 2026-12-03). The attacker's check was
adopted in commit 5677b75 (2026-12-04), after the GTSRB and digits 5-seed studies (1010d73 and
4ac77a8, the same day) had shown the cells it excludes (InputAware on digits). `sensitivity_rows`
gives the pooled confirmatory verdicts at margins 0.3, 0.5 and 0.7 for that reason.

Rows and exclusions, per table (paradigm, dataset):
- A per-attack row of an attack with an unplanted cell in any seed gets the verdict "not planted"
  and names those cells (attack/seed); its n, mean and interval are printed over every seed, for
  reading only.
- The pooled row ("all attacks (seed means)") pools only the attacks planted in every seed of the
  table (and, for its figure, measured in every one), so every seed mean averages the same attacks.
  It names the attacks left out and their unplanted cells. With no such attack its verdict is
  "not planted".

Confirmatory and exploratory rows. The pooled rows of the paper's seven claims (the first seven of
`claims`) form, per table, the confirmatory family; every other row (per-attack rows, the newer
fine-tuning defenses against FT, the retuning attack, SBL's survival) is exploratory.
- Each row's test is the two-sided paired t-test of the mean difference against the claim's bound
  (`stats.p_value`).
- Exploratory: verdict from the unadjusted 95% t-interval (`stats.verdict`): supported when the
  whole interval lies on the claimed side of the bound, contradicted when wholly on the other side,
  else inconclusive (equivalently: p < 0.05, and the side of the mean).
- Confirmatory: the family's p-values are Holm-adjusted for a family-wise level of 0.05
  (`stats.holm`; m = the family's rows with at least 2 seeds). A row is supported when its
  adjusted p < 0.05 and the mean lies on the claimed side of the bound, contradicted when its
  adjusted p < 0.05 and the mean lies on the other side, else inconclusive. Its interval is the
  (1 - alpha_k) t-interval, alpha_k = 0.05 / (m - k + 1), of the Holm step k that decided it: its
  own step when rejected, the step where the procedure stopped otherwise. So the printed interval
  leaves out the bound exactly when the verdict is supported or contradicted, and the "CI level"
  column names the level.
The relearning margin was committed before the first P-ASR results (e492bf1); the planting margin's
value was chosen after results were seen (above).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sequela.report import tables
from sequela.report.stats import directional_verdict, holm, p_value, paired, verdict

CA_MARGIN = 0.02  # "keeps utility": SFT's clean accuracy at most 0.02 below the backdoored model's
PLANTED_MARGIN = 0.5  # a backdoor is planted in a cell when ASR(none) - ASR(clean) >= this
SENSITIVITY_MARGINS = (0.3, 0.5, 0.7)  # the planting margins of the sensitivity table
FAMILY_ALPHA = 0.05  # family-wise level of the confirmatory claims, per table
RELEARN_MARGIN = 0.05  # "relearns no faster than EP": P-ASR at most this above EP's
CONFIRMATORY = 7  # the paper's claims: the first entries of `claims`
POOLED = "all attacks (seed means)"
BENIGN_SCOPE = "no backdoor"  # the benign condition's row: the defenses applied to the clean reference
# The purifying defenses whose retuning-attack rows are judged (each where the grid ran it).
PURIFIERS = {
    "ft": "FT",
    "sft": "SFT",
    "fst": "FST",
    "ftsam": "FT-SAM",
    "sau": "SAU",
    "btidbf": "BTI-DBF(U)",
    "pam": "PAM",
}


@dataclass
class Claim:
    text: str
    a: str  # model whose figure is compared ...
    b: str  # ... against this one's, per (attack, seed): difference = a - b
    figure: str
    below: float | None = None  # the claim is: difference < below
    above: float | None = None  # ... or: difference > above
    confirmatory: bool = False  # one of the paper's claims (its pooled row joins the Holm family)

    @property
    def bound(self) -> float:
        return self.below if self.below is not None else self.above


def claims(mia: str, margin: float = PLANTED_MARGIN) -> list[Claim]:
    """`mia` is the membership figure that answers the paper's question (docs/protocol.md, Membership);
    `margin` the planting margin, which is also the bound of "FT leaves the backdoor in place"."""
    paper = [
        Claim("SFT leaves a lower ASR than FT", "sft", "ft", "asr", below=0.0),
        Claim(
            f"FT leaves the backdoor in place (ASR after FT more than {margin} above the trigger's clean floor)",
            "ft",
            "clean",
            "asr",
            above=margin,
        ),
        Claim(f"SFT keeps clean accuracy (CA drop < {CA_MARGIN})", "sft", "none", "ca", above=-CA_MARGIN),
        Claim("Membership risk falls after SFT", "sft", "none", mia, below=0.0),
        Claim("Membership risk falls after FT", "ft", "none", mia, below=0.0),
        Claim(
            "After SFT the model is easier to re-backdoor than the clean model",
            "sft",
            "clean",
            "reinject_asr",
            above=0.0,
        ),
        Claim(
            "After FT the model is easier to re-backdoor than the clean model", "ft", "clean", "reinject_asr", above=0.0
        ),
    ]
    for claim in paper:
        claim.confirmatory = True
    return [*paper, *family_claims(), *retuning_claims()]


def family_claims() -> list[Claim]:
    """The direction each newer fine-tuning defense's paper reports against plain FT: a lower ASR."""
    return [
        Claim(f"{name} leaves a lower ASR than FT", key, "ft", "asr", below=0.0)
        for key, name in PURIFIERS.items()
        if key not in ("ft", "sft")
    ]


def retuning_claims() -> list[Claim]:
    """Min et al. (2024): a purified model relearns the backdoor from 5 poisons faster than the
    clean model (P-ASR higher), where exact purification (EP, which knows the trigger) does not; so
    each purifier is judged against both."""
    rows = []
    for key, name in PURIFIERS.items():
        rows.append(
            Claim(
                f"After {name} the model relearns the backdoor faster than the clean model (P-ASR)",
                key,
                "clean",
                "p_asr",
                above=0.0,
            )
        )
        rows.append(
            Claim(
                f"After {name} the model relearns the backdoor no faster than after EP "
                f"(P-ASR at most {RELEARN_MARGIN} above)",
                key,
                "ep",
                "p_asr",
                below=RELEARN_MARGIN,
            )
        )
    return rows


def membership_figure(df: pd.DataFrame) -> str:
    """The membership question is about the training data the defense did not revisit (docs/protocol.md)."""
    unseen = "mia_loss_auc_unseen"
    return unseen if unseen in df and df[unseen].notna().any() else "mia_loss_auc"


def differences(df: pd.DataFrame, claim: Claim) -> pd.Series:
    """Per (attack, seed): figure of model a - figure of model b."""
    wide = df.pivot_table(index=["attack", "seed"], columns="defense", values=claim.figure, sort=False)
    if claim.a not in wide or claim.b not in wide:
        return pd.Series(dtype=float)
    return (wide[claim.a] - wide[claim.b]).dropna()


def unplanted(
    df: pd.DataFrame, min_asr: dict[str, float] | None = None, margin: float = PLANTED_MARGIN
) -> set[tuple[str, int]]:
    """(attack, seed) cells whose backdoor was not planted: the attacker's check (the last round's
    held-out ASR, `attacker_check` of the backdoored model's cell) below `min_asr[attack]`, or
    the backdoored model's ASR less than `margin` above the clean reference's."""
    wide = df.pivot_table(index=["attack", "seed"], columns="defense", values="asr", sort=False)
    missed = set()
    if "none" in wide and "clean" in wide:
        lift = wide["none"] - wide["clean"]
        missed = {cell for cell, value in lift.items() if not value >= margin}
    if min_asr and "attacker_check" in df:
        backdoored = df[(df["defense"] == "none") & df["attack"].isin(list(min_asr))]
        for attack, seed, check in zip(backdoored["attack"], backdoored["seed"], backdoored["attacker_check"]):
            if isinstance(check, list) and check and check[-1]["held_out_asr"] < min_asr[attack]:
                missed.add((attack, seed))
    return missed


def _cells(cells) -> str:
    return ", ".join(f"{a}/{s}" for a, s in sorted(cells))


def pooled_over_attacks(diffs: pd.Series, excluded: set, seeds: list) -> tuple[pd.Series, list[str], str]:
    """The per-seed mean over the attacks planted in every seed of `seeds` and measured in each: one
    value per seed, every one over the same attacks. Also the attacks left out and their unplanted cells."""
    kept, left_out, missed = [], [], set()
    for attack, d in diffs.groupby(level="attack", sort=False):
        mine = {cell for cell in excluded if cell[0] == attack}
        measured = set(d.index.get_level_values("seed"))
        if mine:
            left_out.append(f"{attack} (not planted)")
            missed |= mine
        elif not set(seeds) <= measured:
            left_out.append(f"{attack} (not in every seed)")
        else:
            kept.append(attack)
    chosen = diffs[diffs.index.get_level_values("attack").isin(kept)]
    return chosen.groupby(level="seed", sort=False).mean(), left_out, _cells(missed)


def _row(paradigm, dataset, claim_text, scope, compared, d: pd.Series, bound: float) -> dict:
    """A row with the exploratory (unadjusted 95%) interval; `_confirm` replaces it in the family's rows."""
    p = paired(d.to_numpy())
    return {
        "paradigm": paradigm,
        "dataset": dataset,
        "family": "exploratory",
        "claim": claim_text,
        "scope": scope,
        "compared": compared,
        "n": p.n,
        "mean diff": round(p.mean, 3),
        "CI": _interval(p),
        "CI level": "95% (unadjusted)",
        "p": _round(p_value(d.to_numpy(), bound)),
        "p Holm": "–",
        "_d": d,
    }


def _interval(p) -> str:
    return f"[{p.low:.3f}, {p.high:.3f}]"


def _round(x: float) -> float | str:
    return round(x, 4) if np.isfinite(x) else "–"


def _confirm(family: list[tuple[dict, Claim]]) -> None:
    """Holm over the family's pooled rows: adjusted p, verdict, and the interval at the deciding step's level."""
    raw = [p_value(row["_d"].to_numpy(), claim.bound) for row, claim in family]
    for (row, claim), step in zip(family, holm(raw, FAMILY_ALPHA)):
        row["family"] = "confirmatory"
        if row["verdict"] == "not planted" or step is None:
            row["CI level"] = "– (fewer than 2 seeds)" if step is None else row["CI level"]
            continue
        p = paired(row["_d"].to_numpy(), 1 - step.alpha)
        row["CI"], row["p Holm"] = _interval(p), _round(step.p_adjusted)
        row["CI level"] = f"{1 - step.alpha:.2%} (Holm step {step.decided} of {step.size})"
        row["verdict"] = directional_verdict(p.mean, step.rejected, claim.below, claim.above)


def claims_rows(
    df: pd.DataFrame, mia: str, min_asr: dict[str, float] | None = None, margin: float = PLANTED_MARGIN
) -> list[dict]:
    """One row per (paradigm, dataset, claim, scope): scope "all attacks (seed means)" pools the attacks
    planted in every seed (`min_asr`: the attacker's planting targets, attack.budget.min_asr;
    `margin`: the lift rule's). A claim whose figure a cell group does not measure is left out."""
    rows = []
    for (paradigm, dataset), mine in df.groupby(["paradigm", "dataset"], sort=False):
        # A downstream user fine-tunes on all of its data: no unseen members, so all of them answer.
        measured = mia in mine and mine[mia].notna().any()
        excluded = unplanted(mine, min_asr, margin)
        seeds = list(mine["seed"].unique())
        family = []
        for claim in claims(mia if measured else "mia_loss_auc", margin):
            if claim.figure not in mine:
                continue
            diffs = differences(mine, claim)
            if diffs.empty:
                continue
            compared = f"{claim.figure}: {claim.a} - {claim.b}"
            pooled, left_out, missed = pooled_over_attacks(diffs, excluded, seeds)
            row = _row(paradigm, dataset, claim.text, POOLED, compared, pooled, claim.bound)
            row.update(
                {
                    "verdict": verdict(paired(pooled.to_numpy()), claim.below, claim.above)
                    if len(pooled)
                    else "not planted",
                    "excluded (not planted)": missed,
                    "attacks left out": ", ".join(left_out),
                }
            )
            rows.append(row)
            if claim.confirmatory:
                family.append((row, claim))
            for attack, d in diffs.groupby(level="attack", sort=False):
                row = _row(paradigm, dataset, claim.text, attack, compared, d, claim.bound)
                cells = {cell for cell in excluded if cell[0] == attack}
                row.update(
                    {
                        "verdict": "not planted" if cells else verdict(paired(d.to_numpy()), claim.below, claim.above),
                        "excluded (not planted)": _cells(cells),
                        "attacks left out": "",
                    }
                )
                rows.append(row)
        _confirm(family)
    return [{k: v for k, v in row.items() if k != "_d"} for row in rows]


def survival_rows(
    df: pd.DataFrame, min_asr: dict[str, float] | None = None, margin: float = PLANTED_MARGIN
) -> list[dict]:
    """SBL's claim (Pham et al., 2024): its backdoor survives fine-tuning where the same trigger
    trained the usual way does not. Per purifier, the per-seed lift of the ASR after it over the
    trigger's clean floor on SBL's model minus the same on BadNets' (the same square trigger, so the
    floors cancel where both are measured), with its 95% t-interval over seeds against the bound 0.
    Exploratory; "not planted" when either attack has an unplanted cell."""
    rows = []
    for (paradigm, dataset), mine in df.groupby(["paradigm", "dataset"], sort=False):
        wide = mine.pivot_table(index="seed", columns=["attack", "defense"], values="asr", sort=False)
        cells = {cell for cell in unplanted(mine, min_asr, margin) if cell[0] in ("sbl", "badnets")}
        for key, name in PURIFIERS.items():
            if not all((attack, model) in wide for attack in ("sbl", "badnets") for model in (key, "clean")):
                continue
            d = (wide[("sbl", key)] - wide[("sbl", "clean")]) - (wide[("badnets", key)] - wide[("badnets", "clean")])
            row = _row(
                paradigm,
                dataset,
                f"SBL's backdoor survives {name} better than BadNets'",
                "sbl vs badnets",
                f"asr after {key} - clean floor: sbl - badnets",
                d.dropna(),
                0.0,
            )
            row.update(
                {
                    "verdict": "not planted" if cells else verdict(paired(d.dropna().to_numpy()), None, 0.0),
                    "excluded (not planted)": _cells(cells),
                    "attacks left out": "",
                }
            )
            rows.append({k: v for k, v in row.items() if k != "_d"})
    return rows


def benign_claim() -> Claim:
    """The benign condition (the SoK of Abad et al., 2025: defense papers rarely report it): SFT
    applied to the clean reference costs less than CA_MARGIN of its CA."""
    return Claim(
        f"SFT costs less than {CA_MARGIN} CA on a model without a backdoor", "sft", "none", "ca", above=-CA_MARGIN
    )


def benign_rows(benign: pd.DataFrame) -> list[dict]:
    """The benign claim's row per (paradigm, dataset): per seed, CA after SFT - CA of the clean model;
    exploratory, with its 95% t-interval over seeds."""
    rows = []
    claim = benign_claim()
    if benign.empty:
        return rows
    for (paradigm, dataset), mine in benign.groupby(["paradigm", "dataset"], sort=False):
        wide = mine.pivot_table(index="seed", columns="defense", values="ca", sort=False)
        if claim.a not in wide or claim.b not in wide:
            continue
        d = (wide[claim.a] - wide[claim.b]).dropna()
        compared = "ca: sft on the clean model - the clean model"
        row = _row(paradigm, dataset, claim.text, BENIGN_SCOPE, compared, d, claim.bound)
        row.update(
            {
                "verdict": verdict(paired(d.to_numpy()), None, claim.above),
                "excluded (not planted)": "",
                "attacks left out": "",
            }
        )
        rows.append({k: v for k, v in row.items() if k != "_d"})
    return rows


def sensitivity_rows(
    df: pd.DataFrame,
    mia: str,
    min_asr: dict[str, float] | None = None,
    margins: tuple[float, ...] = SENSITIVITY_MARGINS,
) -> list[dict]:
    """The pooled confirmatory rows at each planting margin (the lift rule's; the attacker's check
    unchanged), a claim's margins side by side. The bound of "FT leaves the backdoor in place" moves
    with the margin: "in place" means still planted by the same rule."""
    grouped: dict[tuple, list[dict]] = {}
    for margin in margins:
        for row in claims_rows(df, mia, min_asr, margin):
            if row["family"] == "confirmatory":
                key = (row["paradigm"], row["dataset"], row["compared"])
                rest = {k: v for k, v in row.items() if k not in ("paradigm", "dataset", "family", "scope")}
                grouped.setdefault(key, []).append(
                    {"paradigm": row["paradigm"], "dataset": row["dataset"], "planting margin": margin, **rest}
                )
    return [row for rows in grouped.values() for row in rows]


def write_tables(
    df: pd.DataFrame, standalone: pd.DataFrame, benign: pd.DataFrame, min_asr: dict[str, float], folder: Path
) -> list[dict]:
    """claims.{md,csv,tex} (every claim of `df`, SBL's survival on `standalone`, the benign condition's
    claim on `benign`) and claims-margin-sensitivity.{md,csv,tex}; returns the claims' rows."""
    mia = membership_figure(standalone)
    rows = claims_rows(df, mia, min_asr) + survival_rows(standalone, min_asr) + benign_rows(benign)
    tables.write_rows(
        rows,
        folder / "claims",
        "The paper's claims, judged by paired per-seed differences. Pooled rows average, within "
        "each seed, the attacks planted in every seed (n = seeds). Confirmatory rows (the paper's "
        f"claims, pooled) are Holm-adjusted per paradigm and dataset to a family-wise {FAMILY_ALPHA}; "
        'exploratory rows keep the unadjusted 95% t-interval. "CI level" names each interval\'s level.',
    )
    margins = ", ".join(str(m) for m in SENSITIVITY_MARGINS)
    tables.write_rows(
        sensitivity_rows(df, mia, min_asr),
        folder / "claims-margin-sensitivity",
        f"The confirmatory verdicts at planting margins {margins} (a cell is planted when "
        "ASR(backdoored) - ASR(clean) >= the margin and it passed the attacker's check; the bound of "
        f'"FT leaves the backdoor in place" is the margin). The claims table uses {PLANTED_MARGIN}.',
    )
    return rows
