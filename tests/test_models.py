import torch

from sequela import models


def test_models_round_trip_through_safetensors(tmp_path):
    for arch, shape in [
        ("small_cnn", (2, 1, 16, 16)),
        ("compact_cnn", (2, 3, 32, 32)),
        ("resnet18", (2, 3, 32, 32)),
        ("preact_resnet18", (2, 3, 32, 32)),
    ]:
        spec = {
            "arch": arch,
            "in_channels": shape[1],
            "num_classes": 7,
            "mean": [0.5] * shape[1],
            "std": [0.25] * shape[1],
            "width": 8,
            "input_shape": list(shape[1:]),
        }
        model = models.build_from_spec(spec).eval()
        model.channel_mask[0] = 0.0
        models.save(model, spec, tmp_path / arch)
        loaded, _ = models.load(tmp_path / arch)
        x = torch.rand(*shape)
        assert torch.equal(loaded.eval()(x), model(x))
        assert len(loaded.stage_outputs(x)) == len(model.stages)


def test_channel_mask_silences_pruned_channels():
    model = models.build("small_cnn", 1, 3, [0.0], [1.0], width=4).eval()
    model.channel_mask[:] = 0.0
    assert torch.count_nonzero(model.features(torch.rand(3, 1, 8, 8))) == 0


def test_compact_cnn_has_the_named_parts_and_size():
    model = models.build("compact_cnn", 3, 43, [0.5] * 3, [0.25] * 3).eval()
    assert 0.25e6 < sum(p.numel() for p in model.parameters()) < 0.32e6
    outs = model.stage_outputs(torch.rand(2, 3, 32, 32))
    assert [o.shape[-1] for o in outs] == [16, 8, 4] and outs[-1].shape[1] == len(model.channel_mask) == 128
    assert model.features(torch.rand(2, 3, 32, 32)).shape == (2, 128)


def test_channels_last_changes_the_memory_layout_not_the_function():
    torch.manual_seed(0)
    model = models.build("compact_cnn", 3, 10, [0.5] * 3, [0.25] * 3, width=8).eval()
    x = torch.rand(4, 3, 32, 32)
    assert model.channels_last and not models.build("small_cnn", 1, 10, [0.5], [0.25]).channels_last
    nhwc = model(x)
    assert model.stage_outputs(x)[0].is_contiguous(memory_format=torch.channels_last)
    model.channels_last = False
    assert torch.allclose(model(x), nhwc, atol=1e-5)
    # Gradients flow to the input whatever its layout (NC and the LF trigger search need them).
    x.requires_grad_(True)
    model.channels_last = True
    model(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
