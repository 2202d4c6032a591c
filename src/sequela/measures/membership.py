"""Threshold-free metric membership-inference attacks.

Each attack turns the model's softmax output on a labelled image into one score, higher meaning
"more likely a training member"; it is judged by the AUC and the TPR at 1% FPR of members against
non-members, so no threshold has to be calibrated (Song & Mittal, "Systematic Evaluation of Privacy
Risks of Machine Learning Models", 2021, for the modified entropy).

Members are a seeded sample of the model's *clean* training images with their true labels (the
poisoned ones were seen triggered and relabelled, so they are left out; see `member_groups`);
non-members are the membership holdout carved from the test split, which no model ever trains on.
Logits are computed in float32 even where the models run in bf16.
"""

from __future__ import annotations

import torch

from sequela.datasets.splits import Split
from sequela.engine.loop import predict_logits
from sequela.measures.roc import auc, tpr_at_fpr
from sequela.pipeline.checker import INF, Checker

SCORES = ("loss", "conf", "entropy", "mentropy")
MEMBER_STREAM = 1_000_003  # offset of the member draw's seed from the cell's seed


def check(c: Checker, datasets: list[str] = ()) -> None:
    """`sequela.membership`: the shadow-model attack's features and its MLP (the same for every dataset)."""
    c.integer("sequela.membership.top_k")
    c.integer("sequela.membership.mlp.hidden")
    c.integer("sequela.membership.mlp.epochs")
    c.number("sequela.membership.mlp.lr", 0.0, INF)


def member_groups(
    n_train: int,
    n: int,
    seed: int,
    poisoned: torch.Tensor,
    defender: torch.Tensor,
    removed: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Training indices to score as members, up to `n` per group, drawn in one seeded order.

    Candidates are the clean training rows (not in `poisoned`) that the model trained on (not in
    `removed`). "all" is the first `n` of them; when the defender's subset `defender` covers only
    part of the candidates, "seen" (in it) and "unseen" (not in it) are the first `n` of each.
    Because the order is shared, models that removed nothing get exactly the same members.

    With the training split's group ids (`Split.groups`: GTSRB's tracks), a row counts as seen when
    any row of its group is in `defender`: a frame whose track mates the defender fine-tuned on is
    not unseen, so no group has rows on both sides."""
    # Its own random stream: the defender's subset (splits.clean_subset) is the head of
    # randperm(n_train) under `seed` itself, so the same stream would make "all" = "seen".
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(MEMBER_STREAM + seed))
    allowed = torch.ones(n_train, dtype=torch.bool)
    allowed[poisoned.cpu()] = False
    if removed is not None and len(removed):
        allowed[removed.cpu()] = False
    in_defender = torch.zeros(n_train, dtype=torch.bool)
    in_defender[defender.cpu()] = True
    if groups is not None:
        ids, row_group = torch.unique(groups.cpu(), return_inverse=True)
        group_seen = torch.zeros(len(ids), dtype=torch.bool)
        group_seen[row_group[in_defender]] = True
        in_defender = group_seen[row_group]
    candidates = order[allowed[order]]
    if len(candidates) < 1:
        raise ValueError("no clean training rows are left to score as members")
    groups = {"all": candidates[:n]}
    seen, unseen = candidates[in_defender[candidates]], candidates[~in_defender[candidates]]
    if len(seen) and len(unseen):
        groups.update(seen=seen[:n], unseen=unseen[:n])
    return {k: v.sort().values for k, v in groups.items()}


def stable_log_probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p and log(1 - p) per class, in float64, accurate even for a memorised sample.

    A plain log_softmax rounds the top class's log p to exactly 0 once the other logits are ~37
    below it, so every memorised member would tie at "loss 0" and the AUC would lose its
    resolution exactly where membership leaks most. For the top class we use
    log p = -log1p(sum of the others' p / p_top) and log(1 - p) = logsumexp of the others' log p;
    for the other classes (p <= 1/2) the direct formulas are already accurate."""
    z = logits.to(torch.float64)
    logp = torch.log_softmax(z, dim=1)
    log1m = torch.log1p(-logp.exp())
    rows = torch.arange(len(z), device=z.device)
    top = z.argmax(1)
    others = z - z[rows, top][:, None]
    others[rows, top] = float("-inf")
    logp[rows, top] = -torch.log1p(others.exp().sum(1))
    masked = logp.clone()
    masked[rows, top] = float("-inf")
    log1m[rows, top] = torch.logsumexp(masked, dim=1)
    return logp, log1m


def scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Membership scores (higher = member) from logits and true labels."""
    logp, log1m = stable_log_probs(logits)
    p = logp.exp()
    rows = torch.arange(len(labels), device=logits.device)
    y = labels.to(logits.device)
    logp_y, log1m_y = logp[rows, y], log1m[rows, y]
    top = logp.argmax(1)
    # Modified entropy: -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i); members have less.
    wrong = p * log1m
    wrong[rows, y] = 0.0
    mentropy = -log1m_y.exp() * logp_y - wrong.sum(1)
    return {
        "loss": logp_y,  # negated cross-entropy
        # log-odds of the maximum confidence: a monotone map of max p (same AUC) that does not
        # saturate at 1.0 for memorised samples.
        "conf": logp[rows, top] - log1m[rows, top],
        "entropy": (p * logp).sum(1),  # negated entropy
        "mentropy": -mentropy,
    }


def metric_attacks(
    model: torch.nn.Module, members: Split, nonmembers: Split, max_fpr: float = 0.01
) -> dict[str, float]:
    """`<score>_auc` and `<score>_tpr` (TPR at `max_fpr` FPR) for every score in SCORES."""
    return attacks_on_logits(
        predict_logits(model, members.x, float32=True),
        members.y,
        predict_logits(model, nonmembers.x, float32=True),
        nonmembers.y,
        max_fpr,
    )


def metric_figures(mia: dict[str, float], suffix: str = "") -> dict[str, float]:
    """The metric attacks' figures a sequela cell reports (`attacks_on_logits`' result), keys ending
    in `suffix` (a member group)."""
    return {
        f"mia_loss_auc{suffix}": mia["loss_auc"],
        f"mia_conf_auc{suffix}": mia["conf_auc"],
        f"mia_entropy_auc{suffix}": mia["entropy_auc"],
        f"mia_mentropy_auc{suffix}": mia["mentropy_auc"],
        f"mia_tpr_at_1fpr{suffix}": mia["loss_tpr"],
    }


def attacks_on_logits(
    member_logits: torch.Tensor,
    member_y: torch.Tensor,
    nonmember_logits: torch.Tensor,
    nonmember_y: torch.Tensor,
    max_fpr: float = 0.01,
) -> dict[str, float]:
    """`metric_attacks` on logits already computed (a stage scoring several member groups of one
    model runs it once over their union)."""
    member_scores = scores(member_logits, member_y)
    nonmember_scores = scores(nonmember_logits, nonmember_y)
    out = {}
    for name in SCORES:
        out[f"{name}_auc"] = auc(member_scores[name], nonmember_scores[name])
        out[f"{name}_tpr"] = tpr_at_fpr(member_scores[name], nonmember_scores[name], max_fpr)
    return out


def membership_figures(
    model, train: Split, holdout: Split, groups: dict[str, torch.Tensor], shadow_attack, mlp
) -> dict:
    """Every membership attack (the metric attacks and the shadow model's `shadow_attack` with its
    fitted `mlp`) on each group of member rows of `train` against the `holdout` non-members. Keys of
    a group other than "all" end in _<group>."""
    # One forward pass over the union of the groups and one over the holdout serve every attack.
    union = torch.cat(list(groups.values())).unique()
    union_logits = predict_logits(model, train.x[union], float32=True)
    holdout_logits = predict_logits(model, holdout.x, float32=True)
    out = {}
    for group, rows in groups.items():
        suffix = "" if group == "all" else f"_{group}"
        logits = union_logits[torch.searchsorted(union, rows).to(union_logits.device)]
        mia = attacks_on_logits(logits, train.y[rows], holdout_logits, holdout.y)
        shadow = shadow_attack.evaluate_logits(mlp, logits, holdout_logits)
        out.update(
            {
                **metric_figures(mia, suffix),
                f"mia_shadow_auc{suffix}": shadow["auc"],
                f"mia_shadow_acc{suffix}": shadow["acc"],
                f"mia_n{suffix}": len(rows),
            }
        )
    return out


def standalone(cell, settings: dict):
    """Every membership attack on a standalone model: the metric attacks and the shadow-model attack,
    whose MLP is fitted here once per cell on the shadow model's posteriors (measures/registry.py)."""
    from sequela.measures.shadow import ShadowAttack

    shadow_attack = ShadowAttack.from_settings(settings["membership"], cell.seed)
    mlp = shadow_attack.fit(cell.shadow_model, cell.ds.shadow, cell.ds.shadow_out)
    ds = cell.ds

    def measure(model: torch.nn.Module, removed: torch.Tensor | None) -> dict:
        groups = member_groups(
            len(ds.train), len(ds.holdout), cell.seed, cell.poisoned, cell.defender, removed, groups=ds.train.groups
        )
        return membership_figures(model, ds.train, ds.holdout, groups, shadow_attack, mlp)

    return measure


def downstream_members(n_train: int, n_test: int, seed: int) -> torch.Tensor:
    """Sorted training rows scored as members of a downstream model: a seeded draw of min(n_train, n_test)."""
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(MEMBER_STREAM + seed))
    return order[: min(n_train, n_test)].sort().values


def reused(cell, settings: dict):
    """The metric attacks on a downstream model: members are a seeded draw of the downstream training
    images, non-members the downstream test images (measures/reused.py)."""
    ds = cell.ds

    def measure(model: torch.nn.Module, removed: torch.Tensor | None = None) -> dict:
        rows = downstream_members(len(ds.train), len(ds.test), cell.seed)
        mia = attacks_on_logits(
            predict_logits(model, ds.train.x[rows], float32=True),
            ds.train.y[rows],
            predict_logits(model, ds.test.x, float32=True),
            ds.test.y,
        )
        return {**metric_figures(mia), "mia_n": len(rows)}

    return measure
