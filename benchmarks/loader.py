"""How fast batches of poisoned, augmented images are made: sequela's batched tensor stream
against the usual per-sample torchvision pipeline (PIL image -> RandomCrop -> flip -> ToTensor,
trigger stamped per sample, DataLoader collation).

Run by hand, not in the test suite:
    uv run python benchmarks/loader.py [--dataset mnist] [--root data/raw] [--epochs 3]
It prints images per second for both, on the CPU (and on CUDA for the stream, if present).
"""

import argparse
import time

import numpy as np
import torch
from PIL import Image

from sequela.attacks.registry import ATTACKS, choose_poison_indices
from sequela.engine.batches import Augment, BatchStream
from sequela.sources import loaders


class PerSampleDataset(torch.utils.data.Dataset):
    """The conventional way: one PIL image at a time through torchvision transforms."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, poisoned: set[int], attack, padding: int):
        import torchvision.transforms as T

        self.x, self.y, self.poisoned, self.attack = x, y, poisoned, attack
        self.transform = T.Compose([T.RandomCrop(x.shape[-1], padding=padding), T.RandomHorizontalFlip(), T.ToTensor()])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        image, label = self.x[i].float() / 255, int(self.y[i])
        if i in self.poisoned:
            image, label = self.attack.apply(image[None])[0], 0
        pil = Image.fromarray((image[0].numpy() * 255).astype(np.uint8))
        return self.transform(pil), label


def images_per_second(batches, n_images: int, epochs: int) -> float:
    start = time.perf_counter()
    for _ in range(epochs):
        for _ in batches:
            pass
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n_images * epochs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--root", default="data/raw")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    ds = loaders.load(args.dataset, args.root)
    g = torch.Generator().manual_seed(0)
    attack = ATTACKS["badnets"].create({"size": 3}, ds.train.x, ds.train.y, 0, g)
    poisoned = choose_poison_indices(ds.train.y, 0, 0.1, g)
    n = len(ds.train)
    print(
        f"{args.dataset}: {n} training images {tuple(ds.image_shape)}, batch {args.batch_size}, "
        f"{torch.get_num_threads()} CPU threads"
    )

    loader = torch.utils.data.DataLoader(
        PerSampleDataset(ds.train.x, ds.train.y, set(poisoned.tolist()), attack, 2),
        batch_size=args.batch_size,
        shuffle=True,
    )
    print(f"per-sample PIL DataLoader (cpu): {images_per_second(loader, n, args.epochs):12,.0f} images/s")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        dev = torch.device(device)
        stream = BatchStream(
            ds.train.x,
            ds.train.y,
            args.batch_size,
            dev,
            g,
            augment=Augment(2, True),
            attack=attack.to(dev),
            poisoned=poisoned,
            target=0,
        )
        images_per_second(stream, n, 1)  # warm-up (CUDA kernels, caches)
        print(f"batched tensor stream ({device}):    {images_per_second(stream, n, args.epochs):12,.0f} images/s")


if __name__ == "__main__":
    main()
