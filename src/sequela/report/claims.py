"""The paper's claims, each judged by a paired comparison over seeds.

The seed is the unit of replication: the cells of one seed share the defender's clean data, the
clean reference model and the initialisation, so they are not independent of each other. For one
attack, the per-seed difference (model a - model b, both from that seed's backdoored model) is the
unit. Pooled over attacks ("all attacks"), the differences are first averaged over the attacks
within each seed, and the t-interval is taken over those per-seed means: n is the number of seeds.

A pooled row leaves out every (attack, seed) cell whose backdoor was never planted, by two rules
fixed before any result was seen. The attacker's own check: its model missed the attack's
`attack.budget.min_asr` on the shadow split after its last round (planting.py; the attacker would
not ship it, and the check reads no test image). The lift: the backdoored model's ASR is less than
PLANTED_MARGIN above the clean reference's ASR with the same trigger (the trigger's floor) in that
seed; the paradigms' cells, trained without the attacker's check, are held to this one alone.
Excluded cells are named in the row. Per-attack rows keep every cell.

Each row gives n, the mean difference and its 95% t-interval, and a verdict fixed by `stats.verdict`:
supported when the whole interval lies on the claimed side, contradicted when it lies wholly on the
other, else inconclusive. The bounds (0, or the CA margin) were written down before any result.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sequela.report.stats import paired, verdict

CA_MARGIN = 0.02  # "keeps utility": SFT's clean accuracy at most 0.02 below the backdoored model's
PLANTED_MARGIN = 0.5  # a backdoor is planted in a cell when ASR(none) - ASR(clean) >= this
RELEARN_MARGIN = 0.05  # "relearns no faster than EP": P-ASR at most this above EP's
# The purifying defenses whose retuning-attack rows are judged (each where the grid ran it).
PURIFIERS = {"ft": "FT", "sft": "SFT", "fst": "FST", "ftsam": "FT-SAM", "sau": "SAU", "btidbf": "BTI-DBF(U)",
             "pam": "PAM"}


@dataclass
class Claim:
    text: str
    a: str               # model whose figure is compared ...
    b: str               # ... against this one's, per (attack, seed): difference = a - b
    figure: str
    below: float | None = None   # the claim is: difference < below
    above: float | None = None   # ... or: difference > above


def claims(mia: str) -> list[Claim]:
    """`mia` is the membership figure that answers the paper's question (docs/protocol.md, Membership)."""
    return [
        Claim("SFT leaves a lower ASR than FT", "sft", "ft", "asr", below=0.0),
        Claim("FT leaves the backdoor in place (ASR after FT > 0.5)", "ft", "zero", "asr", above=0.5),
        Claim(f"SFT keeps clean accuracy (CA drop < {CA_MARGIN})", "sft", "none", "ca", above=-CA_MARGIN),
        Claim("Membership risk falls after SFT", "sft", "none", mia, below=0.0),
        Claim("Membership risk falls after FT", "ft", "none", mia, below=0.0),
        Claim("After SFT the model is easier to re-backdoor than the clean model", "sft", "clean", "reinject_asr",
              above=0.0),
        Claim("After FT the model is easier to re-backdoor than the clean model", "ft", "clean", "reinject_asr",
              above=0.0),
        *family_claims(),
        *retuning_claims(),
    ]


def family_claims() -> list[Claim]:
    """The direction each newer fine-tuning defense's paper reports against plain FT: a lower ASR."""
    return [Claim(f"{name} leaves a lower ASR than FT", key, "ft", "asr", below=0.0)
            for key, name in PURIFIERS.items() if key not in ("ft", "sft")]


def retuning_claims() -> list[Claim]:
    """Min et al. (2024): a purified model relearns the backdoor from 5 poisons faster than the
    clean model (P-ASR higher), where exact purification (EP, which knows the trigger) does not; so
    each purifier is judged against both."""
    rows = []
    for key, name in PURIFIERS.items():
        rows.append(Claim(f"After {name} the model relearns the backdoor faster than the clean model (P-ASR)",
                          key, "clean", "p_asr", above=0.0))
        rows.append(Claim(f"After {name} the model relearns the backdoor no faster than after EP "
                          f"(P-ASR at most {RELEARN_MARGIN} above)", key, "ep", "p_asr", below=RELEARN_MARGIN))
    return rows


def differences(df: pd.DataFrame, claim: Claim) -> pd.Series:
    """Per (attack, seed): figure of model a - figure of model b ("zero" is the constant 0)."""
    wide = df.pivot_table(index=["attack", "seed"], columns="defense", values=claim.figure, sort=False)
    if claim.a not in wide:
        return pd.Series(dtype=float)
    b = 0.0 if claim.b == "zero" else wide[claim.b] if claim.b in wide else None
    return pd.Series(dtype=float) if b is None else (wide[claim.a] - b).dropna()


def unplanted(df: pd.DataFrame, min_asr: dict[str, float] | None = None) -> set[tuple[str, int]]:
    """(attack, seed) cells whose backdoor was not planted: the attacker's check (the last round's
    shadow-split ASR, `attacker_check` of the backdoored model's cell) below `min_asr[attack]`, or
    the backdoored model's ASR less than PLANTED_MARGIN above the clean reference's."""
    wide = df.pivot_table(index=["attack", "seed"], columns="defense", values="asr", sort=False)
    missed = set()
    if "none" in wide and "clean" in wide:
        lift = wide["none"] - wide["clean"]
        missed = {cell for cell, value in lift.items() if not value >= PLANTED_MARGIN}
    if min_asr and "attacker_check" in df:
        backdoored = df[(df["defense"] == "none") & df["attack"].isin(list(min_asr))]
        for attack, seed, check in zip(backdoored["attack"], backdoored["seed"], backdoored["attacker_check"]):
            if isinstance(check, list) and check and check[-1]["shadow_asr"] < min_asr[attack]:
                missed.add((attack, seed))
    return missed


def pooled_over_attacks(diffs: pd.Series, excluded: set) -> pd.Series:
    """The per-seed mean of the differences of the planted cells: one value per seed."""
    kept = diffs[[cell not in excluded for cell in diffs.index]]
    return kept.groupby(level="seed", sort=False).mean()


def claims_rows(df: pd.DataFrame, mia: str, min_asr: dict[str, float] | None = None) -> list[dict]:
    """One row per (paradigm, dataset, claim, scope): scope "all attacks" pools the planted cells,
    seed by seed (`min_asr`: the attacker's planting targets, attack.budget.min_asr). A claim whose
    figure a cell group does not measure is left out."""
    rows = []
    for (paradigm, dataset), mine in df.groupby(["paradigm", "dataset"], sort=False):
        # A downstream user fine-tunes on all of its data: no unseen members, so all of them answer.
        measured = mia in mine and mine[mia].notna().any()
        excluded = unplanted(mine, min_asr)
        for claim in claims(mia if measured else "mia_loss_auc"):
            if claim.figure not in mine:
                continue
            diffs = differences(mine, claim)
            if diffs.empty:
                continue
            left_out = sorted(f"{a}/{s}" for a, s in excluded if (a, s) in diffs.index)
            scopes = [("all attacks (seed means)", pooled_over_attacks(diffs, excluded), ", ".join(left_out))]
            scopes += [(a, d, "") for a, d in diffs.groupby(level="attack", sort=False)]
            for scope, d, out in scopes:
                p = paired(d.to_numpy())
                rows.append({"paradigm": paradigm, "dataset": dataset, "claim": claim.text, "scope": scope,
                             "compared": f"{claim.figure}: {claim.a} - {claim.b}", "n": p.n,
                             "mean diff": round(p.mean, 3), "95% CI": f"[{p.low:.3f}, {p.high:.3f}]",
                             "verdict": verdict(p, claim.below, claim.above), "excluded (not planted)": out})
    return rows


def survival_rows(df: pd.DataFrame) -> list[dict]:
    """SBL's claim (Pham et al., 2024): its backdoor survives fine-tuning where the same trigger
    trained the usual way does not. Per purifier, the per-seed ASR after it on SBL's model minus on
    BadNets' (the same square trigger), with its t-interval over seeds; the bound 0 fixed first."""
    rows = []
    for (paradigm, dataset), mine in df.groupby(["paradigm", "dataset"], sort=False):
        wide = mine.pivot_table(index="seed", columns=["attack", "defense"], values="asr", sort=False)
        for key, name in PURIFIERS.items():
            if ("sbl", key) not in wide or ("badnets", key) not in wide:
                continue
            p = paired((wide[("sbl", key)] - wide[("badnets", key)]).dropna().to_numpy())
            rows.append({"paradigm": paradigm, "dataset": dataset,
                         "claim": f"SBL's backdoor survives {name} better than BadNets'", "scope": "sbl vs badnets",
                         "compared": f"asr after {key}: sbl - badnets", "n": p.n, "mean diff": round(p.mean, 3),
                         "95% CI": f"[{p.low:.3f}, {p.high:.3f}]", "verdict": verdict(p, None, 0.0),
                         "excluded (not planted)": ""})
    return rows
