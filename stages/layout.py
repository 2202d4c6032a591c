"""Where the pipeline's files live. Only stage scripts know this; the library is given paths."""

from pathlib import Path

PARADIGM = "standalone"


def prepared(dataset: str) -> Path:
    return Path("data/prepared") / dataset


def poison(dataset: str, attack: str) -> Path:
    return Path("data/poison") / f"{dataset}-{attack}"


def model(dataset: str, attack: str, defense: str = "none") -> Path:
    return Path("data/models") / f"{dataset}-{attack}" / defense


def cell_name(dataset: str, attack: str, defense: str) -> str:
    return f"{dataset}-{attack}-{defense}"


def cell_metrics(dataset: str, attack: str, defense: str) -> Path:
    return Path("metrics/cells") / f"{cell_name(dataset, attack, defense)}.json"


def defense_curve(dataset: str, attack: str, defense: str) -> Path:
    return Path("metrics/curves/defend") / f"{cell_name(dataset, attack, defense)}.tsv"


def train_curve(dataset: str, attack: str) -> Path:
    return Path("metrics/curves/train") / f"{dataset}-{attack}.tsv"


def clean_model(dataset: str) -> Path:
    return Path("data/models") / f"{dataset}-clean"


def clean_metrics(dataset: str) -> Path:
    return Path("metrics/cells") / f"{dataset}-clean.json"


def clean_curve(dataset: str) -> Path:
    return Path("metrics/curves/train") / f"{dataset}-clean.tsv"


def shadow_model(dataset: str) -> Path:
    """The membership attacker's shadow model (model files + members.safetensors)."""
    return Path("data/models") / f"{dataset}-shadow"


def shadow_metrics(dataset: str) -> Path:
    return Path("metrics/cells") / f"{dataset}-shadow.json"


def sequela_metrics(dataset: str, attack: str, defense: str) -> Path:
    """Sequela figures of one model; defense "none" is the backdoored model, "clean" the clean
    reference model measured with this attack's trigger."""
    return Path("metrics/cells") / f"{cell_name(dataset, attack, defense)}-sequela.json"
