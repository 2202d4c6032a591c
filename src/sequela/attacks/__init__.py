"""Attack registry. Each attack lives in its own module; see `base.Attack` for the interface."""

from sequela.attacks.base import Attack, choose_poison_indices, load_artefact, save_artefact
from sequela.attacks.blend import BadNets, Blended
from sequela.attacks.inputaware import InputAware
from sequela.attacks.lf import LowFrequency
from sequela.attacks.wanet import WaNet

ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (BadNets, Blended, LowFrequency, WaNet, InputAware)}

__all__ = ["ATTACKS", "Attack", "choose_poison_indices", "load_artefact", "save_artefact"]
