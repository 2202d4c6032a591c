import torch
from torch import nn

from sequela.attacks.registry import ATTACKS
from sequela.datasets.splits import Split
from sequela.metrics import evaluate


class CornerModel(nn.Module):
    """Predicts the target 0 when the bottom-right pixel is white, else the image's 'true' label,
    which it reads off the top-left pixel (label * 10 / 255)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        label = (x[:, 0, 0, 0] * 255 / 10).round().long()
        triggered = x[:, 0, -1, -1] > 0.99
        pred = torch.where(triggered, torch.zeros_like(label), label)
        return nn.functional.one_hot(pred, 4).float() + self.dummy


def test_asr_leaves_out_target_class_images_and_ra_counts_true_labels():
    y = torch.tensor([0, 0, 1, 2, 3, 3])
    x = torch.zeros(6, 1, 8, 8, dtype=torch.uint8)
    x[:, 0, 0, 0] = (y * 10).to(torch.uint8)
    attack = ATTACKS["badnets"].create({"size": 1}, x, y, 0, torch.Generator())
    result = evaluate(CornerModel(), Split(x, y), attack, target=0)
    assert result["ca"] == 1.0
    assert result["asr"] == 1.0  # 4 non-target images, all flipped to 0; target images are not counted
    assert result["ra"] == 0.0


def test_asr_counts_only_successes_among_non_target_images():
    y = torch.tensor([0, 1, 2, 3])
    x = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    x[:, 0, 0, 0] = (y * 10).to(torch.uint8)
    attack = ATTACKS["badnets"].create({"size": 1}, x, y, 0, torch.Generator())
    model = CornerModel()
    result = evaluate(model, Split(x, y), attack, target=0)
    assert result["asr"] == 1.0
    # An attack that stamps nothing: no image flips, so ASR 0 and RA 1 on the 3 non-target images.
    attack.tensors["mask"].zero_()
    result = evaluate(model, Split(x, y), attack, target=0)
    assert result["asr"] == 0.0 and result["ra"] == 1.0
