"""Attack registry. Each attack lives in its own module; see `base.Attack` for the interface."""

from sequela.attacks.base import Attack, choose_poison_indices, load_artefact, save_artefact
from sequela.attacks.blend import BadNets, Blended
from sequela.attacks.inputaware import InputAware
from sequela.attacks.lf import LowFrequency
from sequela.attacks.wanet import WaNet

ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (BadNets, Blended, LowFrequency, WaNet, InputAware)}


def plant(name: str, settings: dict, train_x, train_y, target: int, rate: float, seed: int, device,
          clean_model_loader=None):
    """The attacker's choice of poisoned rows and its trigger, from one generator seeded with `seed`:
    (attack, poisoned indices). Attacks built against a trained model (LF) call
    `clean_model_loader()` for the clean reference model; attacks that train something
    (InputAware's generators) do it on `device`."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    indices = choose_poison_indices(train_y, target, rate, generator)
    cls = ATTACKS[name]
    context = {"device": device}
    if cls.needs_clean_model:
        context["clean_model"] = clean_model_loader()
    return cls.create(settings, train_x, train_y, target, generator, **context), indices


__all__ = ["ATTACKS", "Attack", "choose_poison_indices", "load_artefact", "plant", "save_artefact"]
