"""Model registry: a small CNN for digit-sized data, a compact CNN for 32x32 images on a CPU,
ResNet-18 with the CIFAR stem (the paper's, for GPUs) and PreAct-ResNet-18 (BackdoorBench's
default, so that its checkpoints can be brought in: `sequela convert`).

Every model is a `Classifier` with the same named parts, so defenses find the layers they need
here instead of in per-architecture copies of their code:
  normalize -> stem -> stages[0..k-1] -> channel_mask -> pool -> fc
- `stages` are the blocks whose outputs attention distillation (NAD) compares;
- the last stage's output is the "last conv layer" whose channels fine-pruning (FP) masks, through
  the `channel_mask` buffer (1 = keep, 0 = pruned), which is saved with the weights;
- `features(x)` is the pooled penultimate representation (AC, Spectral, membership shadow models).
Inputs are images in [0, 1]; the model normalises them itself with the training set's statistics.

A model file is self-describing: model.safetensors carries, in its safetensors metadata, the
architecture and its arguments, the input shape and the normalisation (`file_metadata`), so
`load_file` rebuilds the model from the file alone and refuses a file without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sequela.pipeline.errors import StageError
from sequela.pipeline.io import load_tensors, read_metadata, save_tensors


class Normalize(nn.Module):
    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class FeatureNorm(nn.BatchNorm1d):
    """Per-feature standardisation of an encoder's features, the first layer of the encoder
    paradigm's downstream classifier: a batch norm without affine parameters, as MAE's linear probe
    puts before its linear layer. A SimCLR encoder trained briefly on a CPU maps nearly every image
    to one direction (mean pairwise cosine 0.96-0.99 on MNIST, measured on the downstream training
    images), so an unstandardised head sees almost no contrast between classes (training accuracy
    0.10-0.36). Batch statistics in training, not statistics fixed once: when FT and SFT move the
    encoder, a fixed rescaling by those small spreads amplifies every change, and the first epoch of
    FT at lr 0.01 collapsed the model to chance (MNIST -> digits, seed 2). A batch of one image, which
    has no spread, is normalised with the running statistics."""

    def __init__(self, width: int):
        super().__init__(width, eps=1e-6, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            return F.batch_norm(x, self.running_mean, self.running_var, training=False, eps=self.eps)
        return super().forward(x)


class Classifier(nn.Module):
    def __init__(
        self,
        normalize: Normalize,
        stem: nn.Module,
        stages: list[nn.Module],
        width: int,
        num_classes: int,
        pool: nn.Module | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        # Run the convolutions on NHWC inputs. On a CPU this makes the compact CNN's training step
        # 1.4x faster (97 -> 69 ms at batch 64 on 2 cores, benchmarks/compact_cnn.py); the digits
        # CNN keeps NCHW, so its results stay bit for bit as they were. CUDA runs NHWC regardless.
        self.channels_last = channels_last
        self.normalize = normalize
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.register_buffer("channel_mask", torch.ones(width))
        self.pool = pool if pool is not None else nn.AdaptiveAvgPool2d(1)
        self.width = width
        self.fc = nn.Linear(width, num_classes)

    def replace_head(self, num_classes: int, hidden: int | None = None, standardize: bool = False) -> None:
        """A freshly initialised head for a new task (transfer, an encoder's downstream task): one
        linear layer, or with `hidden` an MLP width -> hidden -> classes, as the encoder paradigm's
        downstream classifier is; `standardize` puts a FeatureNorm layer in front. The caller
        seeds torch beforehand."""
        device = self.channel_mask.device
        layers = [FeatureNorm(self.width)] if standardize else []
        if hidden is None:
            layers.append(nn.Linear(self.width, num_classes))
        else:
            layers += [nn.Linear(self.width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)]
        self.fc = (layers[0] if len(layers) == 1 else nn.Sequential(*layers)).to(device)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every stage (the last one already channel-masked)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.stem(self.normalize(x))
        outs = []
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if i == len(self.stages) - 1:
                h = h * self.channel_mask.view(1, -1, 1, 1).to(h.dtype)
            outs.append(h)
        return outs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stage_outputs(x)[-1]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


def small_cnn(in_channels: int, num_classes: int, mean, std, width: int = 32) -> Classifier:
    """Three conv layers (width, 2*width, 4*width), two max-pools. Trains in seconds on digits."""
    stem = conv_bn_relu(in_channels, width)
    stages = [
        nn.Sequential(conv_bn_relu(width, 2 * width), nn.MaxPool2d(2)),
        nn.Sequential(conv_bn_relu(2 * width, 4 * width), nn.MaxPool2d(2)),
    ]
    return Classifier(Normalize(mean, std), stem, stages, 4 * width, num_classes)


def compact_cnn(in_channels: int, num_classes: int, mean, std, width: int = 32) -> Classifier:
    """A VGG-style CNN sized for 32x32 images on a CPU: three stages, each ending in a 2x2 max-pool
    (32 -> 16 -> 8 -> 4), widths width / 2*width / 4*width (0.29 M parameters at width 32), and a
    global max-pool. The small CNN's receptive field (~12 pixels before its average pool) is too
    local for traffic signs; after three pools each feature sees the whole 32x32 image."""
    stem = conv_bn_relu(in_channels, width)
    stages = [
        nn.Sequential(conv_bn_relu(width, width), nn.MaxPool2d(2)),
        nn.Sequential(conv_bn_relu(width, 2 * width), conv_bn_relu(2 * width, 2 * width), nn.MaxPool2d(2)),
        nn.Sequential(conv_bn_relu(2 * width, 4 * width), conv_bn_relu(4 * width, 4 * width), nn.MaxPool2d(2)),
    ]
    return Classifier(
        Normalize(mean, std), stem, stages, 4 * width, num_classes, pool=nn.AdaptiveMaxPool2d(1), channels_last=True
    )


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def resnet18(in_channels: int, num_classes: int, mean, std, width: int = 64) -> Classifier:
    """ResNet-18 with the CIFAR stem: a 3x3 stride-1 convolution and no max-pool."""
    stem = conv_bn_relu(in_channels, width)
    stages, c_in = [], width
    for i, stride in enumerate([1, 2, 2, 2]):
        c_out = width * 2**i
        stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)))
        c_in = c_out
    return Classifier(Normalize(mean, std), stem, stages, c_in, num_classes)


class PreActBlock(nn.Module):
    """He et al.'s pre-activation basic block, with BackdoorBench's parameter names (bn1, conv1,
    bn2, conv2, and a 1x1 convolution `shortcut.0` where the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        skip = self.shortcut(pre) if hasattr(self, "shortcut") else x
        return self.conv2(torch.relu(self.bn2(self.conv1(pre)))) + skip


def preact_resnet18(in_channels: int, num_classes: int, mean, std, width: int = 64) -> Classifier:
    """PreAct-ResNet-18 as BackdoorBench builds it: a bare 3x3 convolution as the stem, four stages of
    two pre-activation blocks, no BatchNorm after the last stage, adaptive average pooling, a linear
    head. Parameter names map one to one (PREACT_NAMES)."""
    stages, c_in = [], width
    for i, stride in enumerate([1, 2, 2, 2]):
        c_out = width * 2**i
        stages.append(nn.Sequential(PreActBlock(c_in, c_out, stride), PreActBlock(c_out, c_out, 1)))
        c_in = c_out
    stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
    return Classifier(Normalize(mean, std), stem, stages, c_in, num_classes)


# BackdoorBench's PreActResNet18 key prefixes -> ours (sequela convert --arch preact_resnet18).
PREACT_NAMES = {
    "conv1.": "stem.",
    "layer1.": "stages.0.",
    "layer2.": "stages.1.",
    "layer3.": "stages.2.",
    "layer4.": "stages.3.",
    "linear.": "fc.",
}

ARCHITECTURES = {
    "small_cnn": small_cnn,
    "compact_cnn": compact_cnn,
    "resnet18": resnet18,
    "preact_resnet18": preact_resnet18,
}


def build(
    arch: str,
    in_channels: int,
    num_classes: int,
    mean,
    std,
    width: int | None = None,
    head_hidden: int | None = None,
    head_standardize: bool = False,
) -> Classifier:
    """`head_hidden`: an MLP head (Classifier.replace_head) instead of the linear one;
    `head_standardize`: a FeatureNorm layer in front of it."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"model: {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    kwargs = {} if width is None else {"width": width}
    model = ARCHITECTURES[arch](in_channels, num_classes, mean, std, **kwargs)
    if head_hidden is not None or head_standardize:
        model.replace_head(num_classes, head_hidden, head_standardize)
    return model


def build_from_spec(spec: dict) -> Classifier:
    return build(
        spec["arch"],
        spec["in_channels"],
        spec["num_classes"],
        spec["mean"],
        spec["std"],
        spec.get("width"),
        spec.get("head_hidden"),
        spec.get("head_standardize", False),
    )


FORMAT = "sequela-classifier/1"
METADATA_KEY = "sequela_model"
SPEC_KEYS = ("arch", "in_channels", "num_classes", "mean", "std", "input_shape")


def file_metadata(spec: dict) -> dict[str, str]:
    """The safetensors metadata of a model file: one key, METADATA_KEY, whose value is JSON holding
    the format and the spec (architecture, width, classes, head, input shape, normalisation). One key,
    not one per field: safetensors writes its metadata map in no fixed order, and a model file must
    come out byte-identical from the same run."""
    missing = [k for k in SPEC_KEYS if k not in spec]
    if missing:
        raise ValueError(f"a model spec needs {', '.join(missing)} to describe its file")
    return {METADATA_KEY: json.dumps({"format": FORMAT, "spec": spec}, sort_keys=True)}


def save_file(model: nn.Module, spec: dict, path: str | Path) -> None:
    save_tensors(model.state_dict(), path, file_metadata(spec))


def read_spec(path: str | Path) -> dict:
    """The spec a model file carries; one line naming the file where it carries none."""
    meta = read_metadata(path)
    try:
        described = json.loads(meta[METADATA_KEY])
        if described["format"] != FORMAT:
            raise ValueError(described["format"])
        return described["spec"]
    except (KeyError, ValueError, TypeError):
        raise StageError(
            f"{path} carries no sequela model metadata (architecture, input shape, normalisation); "
            "a plain state dict needs `sequela convert` first"
        ) from None


def load_file(path: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    """The model a self-describing file holds, and its spec."""
    spec = read_spec(path)
    model = build_from_spec(spec)
    model.load_state_dict(load_tensors(path))
    return model.to(device), spec


def save(model: Classifier, spec: dict, out_dir: str | Path) -> None:
    """A cell's model: model.safetensors in `out_dir`, self-describing."""
    save_file(model, spec, Path(out_dir) / "model.safetensors")


def load(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    return load_file(Path(model_dir) / "model.safetensors", device)
