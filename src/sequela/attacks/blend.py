"""BadNets and Blended: both paste a pattern through a mask, x' = (1 - m) * x + m * p.

BadNets' mask is 1 on a small square (the trigger replaces those pixels); Blended's mask is alpha
everywhere (the pattern is mixed into the whole image).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sequela.attacks.base import Attack
from sequela.pipeline.checker import fail
from sequela.pipeline.errors import ConfigError


class MaskedPattern(Attack):
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        mask, pattern = self.tensors["mask"].to(x.dtype), self.tensors["pattern"].to(x.dtype)
        return x * (1 - mask) + pattern * mask


class BadNets(MaskedPattern):
    """A size x size white square at the bottom-right corner."""

    name = "badnets"

    @classmethod
    def check_params(cls, c, key, side, smallest):
        size = c.integer(f"{key}.size")
        if size > side:
            fail(f"{key}.size", size, f"at most {side}, the image side of {smallest}")

    @classmethod
    def create(cls, params, train_x, train_y, target, generator, **context):
        c, h, w = train_x.shape[1:]
        size = params["size"]
        mask = torch.zeros(1, h, w)
        mask[:, h - size :, w - size :] = 1.0
        pattern = torch.ones(c, h, w)
        return cls({"mask": mask, "pattern": pattern}, params)


class Blended(MaskedPattern):
    """A full-image pattern blended in with weight alpha. The pattern is a seeded uniform random
    image, or `pattern_file` (any image Pillow reads), resized to the data's shape."""

    name = "blended"

    @classmethod
    def check_params(cls, c, key, side, smallest):
        c.number(f"{key}.alpha", 0.0, 1.0, high_open=False)
        pattern = c.get(f"{key}.pattern_file")
        if pattern is not None:
            check_pattern_file(f"{key}.pattern_file", pattern)

    @classmethod
    def create(cls, params, train_x, train_y, target, generator, **context):
        c, h, w = train_x.shape[1:]
        if params.get("pattern_file"):
            pattern = read_pattern(Path(params["pattern_file"]), c, h, w)
        else:
            pattern = torch.rand(c, h, w, generator=generator)
        mask = torch.full((1, h, w), float(params["alpha"]))
        return cls({"mask": mask, "pattern": pattern}, params)


def check_pattern_file(key: str, pattern) -> None:
    if not isinstance(pattern, str) or not pattern:
        fail(key, pattern, "null (a seeded random pattern) or the path of an image file")
    if not os.path.isfile(pattern):  # unlike Path.is_file, never raises (a name too long, no access)
        fail(key, pattern, "null or the path of an existing image file (relative to the project root)")
    from PIL import Image

    try:
        with Image.open(pattern) as image:
            image.verify()
    except Exception:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, DecompressionBombError)
        fail(key, pattern, "null or an image file that PIL can read (PNG, JPEG, ...)")


def read_pattern(path: Path, channels: int, height: int, width: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    if not path.is_file():
        raise ConfigError(f"params.yaml: attack.blended.pattern_file = {str(path)!r} does not exist")
    image = Image.open(path).convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array)
    return tensor[None] if channels == 1 else tensor.permute(2, 0, 1).contiguous()
