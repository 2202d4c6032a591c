"""Where the pipeline's files live. Only stage scripts know this; the library is given paths.

Every path of a seeded cell carries the paradigm and the seed, so adding a seed to `grid.seeds`
adds files beside the others and never overwrites them:

    data/prepared/<dataset>/                                   (one split per dataset, every seed)
    data/<paradigm>/<dataset>/seed<k>/clean/round<r>           the clean reference after r rounds
    data/<paradigm>/<dataset>/seed<k>/shadow/round<r>          the membership shadow model after r rounds
    data/<paradigm>/<dataset>/seed<k>/backdoored/<attack>/poison   trigger + poisoned indices
    data/<paradigm>/<dataset>/seed<k>/backdoored/<attack>/none     the backdoored model
    data/<paradigm>/<dataset>/seed<k>/defended/<attack>/<d>        each defended model
    metrics/cells/<paradigm>/<dataset>/seed<k>/...json         per-cell figures (DVC outputs, cached)
    metrics/curves/<paradigm>/<dataset>/seed<k>/...tsv         per-epoch curves (DVC plots)
    metrics/cells/<paradigm>/<dataset>/seed<k>/ablation/<point>.json
                                                               one ablation sweep point, every attack

The clean reference and the membership shadow model keep one snapshot per round of the recipe's
epochs (up to attack.budget.max_rounds): a cell compares its backdoored model, trained r rounds by
the attacker's budget rule, with the references after r rounds, so every compared model trains the
same epochs on the same schedule.

The backdoored models of a seed sit apart from the defended ones, so that a stage that reads every
attack's backdoored model (an ablation point) can depend on that one folder without rerunning
whenever a defense changes.

The transfer and encoder paradigms key their cells by the pair `<upstream>-to-<downstream>` where
the standalone paradigm has a dataset (the encoder's pre-training set alone for its clean encoder):

    data/transfer/<pair>/seed<k>/<attack>/<model>              clean, none, ft, sft
    data/encoder/<dataset>/seed<k>/clean-encoder               SimCLR encoder
    data/encoder/<pair>/seed<k>/badencoder                     backdoored encoder + its trigger
    data/encoder/<pair>/seed<k>/downstream/<model>             clean, none, ft, sft
"""

from pathlib import Path

from sequela.pipeline.io import read_json

STANDALONE, TRANSFER, ENCODER = "standalone", "transfer", "encoder"  # the paradigm: every path's first key


def prepared(dataset: str) -> Path:
    return Path("data/prepared") / dataset


def run_dir(dataset: str, seed: int, paradigm: str = STANDALONE) -> Path:
    return Path("data") / paradigm / dataset / f"seed{seed}"


def cells_dir(dataset: str, seed: int, paradigm: str = STANDALONE) -> Path:
    return Path("metrics/cells") / paradigm / dataset / f"seed{seed}"


def curves_dir(dataset: str, seed: int, paradigm: str = STANDALONE) -> Path:
    return Path("metrics/curves") / paradigm / dataset / f"seed{seed}"


def clean_models(dataset: str, seed: int) -> Path:
    """The clean stage's output folder: one snapshot of the clean reference per round."""
    return run_dir(dataset, seed) / "clean"


def clean_model(dataset: str, seed: int, rounds: int) -> Path:
    """The clean reference after `rounds` rounds of the recipe's epochs."""
    return clean_models(dataset, seed) / f"round{rounds}"


def shadow_models(dataset: str, seed: int) -> Path:
    """The shadow stage's output folder: one snapshot of the membership shadow model per round."""
    return run_dir(dataset, seed) / "shadow"


def shadow_model(dataset: str, seed: int, rounds: int) -> Path:
    """The membership attacker's shadow model after `rounds` rounds of the recipe's epochs."""
    return shadow_models(dataset, seed) / f"round{rounds}"


def backdoored(dataset: str, seed: int) -> Path:
    """Every attack's poison and backdoored model of one seed."""
    return run_dir(dataset, seed) / "backdoored"


def poison(dataset: str, attack: str, seed: int) -> Path:
    return backdoored(dataset, seed) / attack / "poison"


def model(dataset: str, attack: str, seed: int, defense: str = "none") -> Path:
    """The backdoored model ("none") or a defended one; "clean" is the clean reference model trained
    as long as the backdoored one."""
    if defense == "clean":
        return clean_model(dataset, seed, backdoored_rounds(dataset, attack, seed))
    if defense == "none":
        return backdoored(dataset, seed) / attack / "none"
    return defended_models(dataset, attack, seed) / defense


def removed(model_dir: Path) -> Path:
    """The training rows a defense dropped before retraining (not members of its model), beside the model."""
    return model_dir / "removed.safetensors"


def defended_models(dataset: str, attack: str, seed: int) -> Path:
    """The defend stage's output folder: one sub-folder per defense."""
    return run_dir(dataset, seed) / "defended" / attack


def clean_metrics(dataset: str, seed: int) -> Path:
    return cells_dir(dataset, seed) / "clean.json"


def benign_metrics(dataset: str, seed: int) -> Path:
    """The post-training defenses applied to the clean reference: what defending costs without a backdoor."""
    return cells_dir(dataset, seed) / "benign.json"


def shadow_metrics(dataset: str, seed: int) -> Path:
    return cells_dir(dataset, seed) / "shadow.json"


def backdoored_metrics(dataset: str, attack: str, seed: int) -> Path:
    return cells_dir(dataset, seed) / f"{attack}-none.json"


def backdoored_rounds(dataset: str, attack: str, seed: int) -> int:
    """How many rounds of the recipe's epochs the attacker trained its backdoored model (train@'s cell)."""
    return int(read_json(backdoored_metrics(dataset, attack, seed))["rounds"])


def defense_metrics(dataset: str, attack: str, seed: int) -> Path:
    """Every defense's figures for one (dataset, attack, seed): {defense: {...}}."""
    return cells_dir(dataset, seed) / f"{attack}-defenses.json"


def sequela_metrics(dataset: str, attack: str, seed: int) -> Path:
    """Sequela figures of every model of one (dataset, attack, seed): the clean reference (measured
    with this attack's trigger), the backdoored model and each defended one."""
    return cells_dir(dataset, seed) / f"{attack}-sequela.json"


def ablation_metrics(dataset: str, seed: int, point: str) -> Path:
    """One sweep point, `<sweep>-<value>` as params.yaml's ablation.points spells it: every attack."""
    return cells_dir(dataset, seed) / "ablation" / f"{point}.json"


def train_curve(dataset: str, attack: str, seed: int) -> Path:
    return curves_dir(dataset, seed) / f"{attack}-none.tsv"


def clean_curve(dataset: str, seed: int) -> Path:
    return curves_dir(dataset, seed) / "clean.tsv"


def defense_curves(dataset: str, attack: str, seed: int) -> Path:
    return curves_dir(dataset, seed) / f"{attack}-defenses"


def defense_curve(dataset: str, attack: str, seed: int, defense: str) -> Path:
    return defense_curves(dataset, attack, seed) / f"{defense}.tsv"


# --- the transfer and encoder paradigms ---------------------------------------------------------


def pair(upstream: str, downstream: str) -> str:
    return f"{upstream}-to-{downstream}"


def transfer_models(pair_: str, attack: str, seed: int) -> Path:
    return run_dir(pair_, seed, TRANSFER) / attack


def transfer_metrics(pair_: str, attack: str, seed: int) -> Path:
    return cells_dir(pair_, seed, TRANSFER) / f"{attack}.json"


def transfer_curves(pair_: str, attack: str, seed: int) -> Path:
    return curves_dir(pair_, seed, TRANSFER) / attack


def clean_encoder(dataset: str, seed: int) -> Path:
    return run_dir(dataset, seed, ENCODER) / "clean-encoder"


def pretrain_metrics(dataset: str, seed: int) -> Path:
    return cells_dir(dataset, seed, ENCODER) / "pretrain.json"


def backdoored_encoder(pair_: str, seed: int) -> Path:
    return run_dir(pair_, seed, ENCODER) / "badencoder"


def badencoder_attack_metrics(pair_: str, seed: int) -> Path:
    """The badencoder stage's own figures: how the backdoored encoder was trained and what it kept."""
    return cells_dir(pair_, seed, ENCODER) / "badencoder-attack.json"


def encoder_models(pair_: str, seed: int) -> Path:
    return run_dir(pair_, seed, ENCODER) / "downstream"


def encoder_downstream_metrics(pair_: str, seed: int) -> Path:
    """The encoder stage's downstream cell of the BadEncoder attack, named after it as a transfer cell is
    after its attack: every downstream model's figures and sequela."""
    return cells_dir(pair_, seed, ENCODER) / "badencoder.json"


def encoder_curves(pair_: str, seed: int) -> Path:
    return curves_dir(pair_, seed, ENCODER) / "badencoder"


# --- models trained elsewhere, defended as cells of the grid (stage external@) ---


def external_folder(name: str) -> Path:
    """The user's folder: model.safetensors and its data folders (src/sequela/external.py)."""
    return Path("external") / name


def external_models(name: str, seed: int) -> Path:
    return Path("data/external") / name / f"seed{seed}"


def external_metrics(name: str, seed: int) -> Path:
    return Path("metrics/cells/external") / name / f"seed{seed}.json"
