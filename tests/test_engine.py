import torch

from sequela.attacks.registry import ATTACKS
from sequela.engine.batches import Augment, BatchStream


def test_random_crop_shifts_each_image_within_its_padding():
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 4] = 1.0  # one bright pixel in the centre
    out = Augment(crop_padding=2)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    pos = torch.nonzero(out[:, 0] == 1.0)[:, 1:]
    assert len(pos) == 64  # the pixel never leaves the frame when the shift is within the padding
    shift = pos - 4
    assert shift.abs().max() <= 2 and len({tuple(s) for s in shift.tolist()}) > 5  # varied offsets


def test_flip_is_horizontal_and_random():
    x = torch.arange(8.0).view(1, 1, 1, 8).repeat(100, 1, 1, 1)
    out = Augment(flip=True)(x, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(3)).all(dim=(1, 2, 3))
    same = (out == x).all(dim=(1, 2, 3))
    assert bool((flipped | same).all()) and 20 < int(flipped.sum()) < 80


def test_stream_poisons_exactly_the_flagged_samples_once_per_epoch():
    n = 50
    x = torch.full((n, 1, 6, 6), 100, dtype=torch.uint8)
    y = torch.arange(n) % 5 + 1
    attack = ATTACKS["badnets"].create({"size": 2}, x, y, 0, torch.Generator())
    poisoned = torch.tensor([3, 7, 11])
    stream = BatchStream(
        x, y, 16, torch.device("cpu"), torch.Generator().manual_seed(0), attack=attack, poisoned=poisoned, target=0
    )
    xs, ys = zip(*stream)
    xs, ys = torch.cat(xs), torch.cat(ys)
    assert len(ys) == n and int((ys == 0).sum()) == 3
    stamped = xs[:, 0, -1, -1] == 1.0
    assert torch.equal(stamped, ys == 0)


def test_sgd_matches_torch_sgd_bit_for_bit():
    from sequela import models
    from sequela.engine.optimizers import SGD

    torch.manual_seed(0)
    a = models.build("small_cnn", 1, 3, [0.5], [0.2], width=4)
    b = models.build("small_cnn", 1, 3, [0.5], [0.2], width=4)
    b.load_state_dict(a.state_dict())
    ours, theirs = (
        SGD(a.parameters(), lr=0.05),
        torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4),
    )
    for _ in range(5):
        x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,))
        for model, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_adam_matches_torch_adam_bit_for_bit():
    from sequela.engine.optimizers import Adam

    torch.manual_seed(0)
    a = torch.randn(4, 5, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    ours, theirs = Adam([a], lr=0.1, betas=(0.5, 0.9)), torch.optim.Adam([b], lr=0.1, betas=(0.5, 0.9))
    for _ in range(6):
        target = torch.randn(4, 5)
        for w, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            (w - target).pow(3).abs().sum().backward()
            opt.step()
    assert not torch.equal(a, torch.zeros_like(a))
    assert torch.equal(a, b)


def test_cpu_bf16_runs_cpu_forward_passes_in_bf16_only_while_enabled():
    import torch.nn.functional as F

    from sequela.engine.device import autocast, use_cpu_bf16
    from sequela.engine.optimizers import sgd
    from sequela.models import build

    torch.manual_seed(0)
    model = build("compact_cnn", 3, 5, [0.5] * 3, [0.25] * 3, width=8)
    x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 5, (32,))
    cpu = torch.device("cpu")
    with autocast(cpu):
        assert model(x).dtype == torch.float32  # the default: float32 on a CPU
    try:
        use_cpu_bf16(True)
        with autocast(cpu):
            assert model(x).dtype == torch.bfloat16
        # the weights and their updates stay float32, and a few steps fit a fixed batch
        optimizer = sgd(model, lr=0.05)
        first = None
        for _ in range(30):
            with autocast(cpu):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            first = loss.item() if first is None else first
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert loss.item() < 0.5 * first
    finally:
        use_cpu_bf16(False)
    with autocast(cpu):
        assert model(x).dtype == torch.float32
