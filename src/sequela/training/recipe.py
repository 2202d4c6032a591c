"""A dataset's training recipe (params.yaml `recipe.<dataset>`): the model and how it is trained.

The 32x32 sets hold several named recipes (`cpu`, the paper's `gpu`) and train with the one `use`
names; `recipe_key` resolves that. `check_recipe` is the section's own check.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from sequela.pipeline.checker import INF, Checker, fail, is_int


@dataclass
class Recipe:
    """How a dataset's models are trained (params.yaml `recipe.<dataset>`)."""

    model: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crop_padding: int = 0
    flip: bool = False
    width: int | None = None
    cpu_bf16: bool = False  # bf16 autocast on a CPU as well (engine.use_cpu_bf16); CUDA always uses it

    @classmethod
    def from_params(cls, params: dict, dataset: str) -> "Recipe":
        block = Checker(params).get(recipe_key(params, dataset))
        known = {f.name for f in fields(cls)}  # an unknown key is reported by the params check
        return cls(**{k: v for k, v in block.items() if k in known})


def recipe_key(params: dict, dataset: str, checker: Checker | None = None) -> str:
    """The params key of the recipe a dataset trains with: `recipe.<dataset>`, or, where that block
    holds several named recipes (the 32x32 sets: `cpu` and the paper's `gpu`), the one its `use`
    names, e.g. `recipe.gtsrb.cpu`."""
    c = checker or Checker(params)
    block = c.get(f"recipe.{dataset}")
    if not isinstance(block, dict):
        fail(f"recipe.{dataset}", block, "a mapping of training settings (model, epochs, batch_size, lr, ...)")
    if "use" not in block:
        return f"recipe.{dataset}"
    choices = sorted(str(k) for k, v in block.items() if k != "use" and isinstance(v, dict))
    use = c.get(f"recipe.{dataset}.use")
    if not isinstance(use, str) or use not in choices:
        fail(f"recipe.{dataset}.use", use, f"one of {', '.join(choices)}")
    return f"recipe.{dataset}.{use}"


def check_recipe(c: Checker, key: str, architectures: tuple[str, ...]) -> None:
    """One recipe block; `architectures` are the model registry's names."""
    c.choice(f"{key}.model", architectures)
    c.integer(f"{key}.epochs")
    c.integer(f"{key}.batch_size")
    c.number(f"{key}.lr", 0.0, INF)
    # optional: absent, they take Recipe's defaults
    if c.get(f"{key}.momentum", None) is not None:
        c.number(f"{key}.momentum", 0.0, 1.0, low_open=False)
    if c.get(f"{key}.weight_decay", None) is not None:
        c.number(f"{key}.weight_decay", 0.0, INF, low_open=False)
    if c.get(f"{key}.crop_padding", None) is not None:
        c.integer(f"{key}.crop_padding", low=0)
    if c.get(f"{key}.flip", None) is not None:
        c.boolean(f"{key}.flip")
    if c.get(f"{key}.cpu_bf16", None) is not None:
        c.boolean(f"{key}.cpu_bf16")
    width = c.get(f"{key}.width", None)
    if width is not None and (not is_int(width) or width < 1):
        fail(f"{key}.width", width, "a positive integer, or absent for the model's default")
