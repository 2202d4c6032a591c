"""LF (low frequency): one smooth universal perturbation, found against a clean model of the attacker's.

The trigger is a single additive perturbation `delta` (C, H, W), x' = clamp(x + delta, 0, 1). It is
optimised so that a clean model already leans towards the target class on triggered images (which
makes the backdoor quick to learn), and it is kept band-limited so it looks like a soft shading
rather than a visible stamp. The clean model is the attacker's surrogate, trained on data the
attacker holds (attacker.surrogate), as Zeng et al. build it on a model of their own: built against
the defender's clean reference, the trigger's floor on that reference would be a white-box attack.

Both constraints hold exactly at the end, not only approximately. Clamping a band-limited signal to
an L-inf ball puts high frequencies back in, so delta is never clamped: it is parametrised as

    delta = lowpass(v) * min(1, eps / max|lowpass(v)|)

and `v` is what the optimiser moves. `lowpass` zeroes every 2-D FFT coefficient outside the cutoff
and a scalar rescale keeps a signal band-limited, so every delta the optimiser sees (the final one
included) is inside both the pass band and the L-inf ball.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sequela.attacks.base import Attack
from sequela.pipeline.checker import INF
from sequela.pipeline.progress import bar


def lowpass_mask(h: int, w: int, cutoff: float) -> torch.Tensor:
    """Boolean (H, W) mask over FFT bins: True where |fy| and |fx| are both <= cutoff x Nyquist.

    The mask is symmetric under f -> -f (a cutoff below 1 leaves out the lone +-Nyquist bin of an
    even size), so filtering a real signal gives a real signal back."""
    fy = torch.fft.fftfreq(h).abs()[:, None]  # cycles per pixel; Nyquist is 0.5
    fx = torch.fft.fftfreq(w).abs()[None, :]
    limit = 0.5 * cutoff + 1e-9
    return (fy <= limit) & (fx <= limit)


def lowpass(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero every FFT coefficient of the last two dimensions outside `mask`."""
    spectrum = torch.fft.fft2(v) * mask.to(v.device)
    return torch.fft.ifft2(spectrum).real


def bounded(v: torch.Tensor, mask: torch.Tensor, eps: float) -> torch.Tensor:
    """lowpass(v), scaled down (never up) so that its largest entry is at most eps."""
    d = lowpass(v, mask)
    peak = d.abs().max().clamp_min(eps)
    return d * (eps / peak)


class LowFrequency(Attack):
    name = "lf"
    needs_surrogate = True

    @classmethod
    def check_params(cls, c, key, side, smallest):
        c.number(f"{key}.eps", 0.0, 1.0, high_open=False)
        c.number(f"{key}.cutoff", 0.0, 1.0, high_open=False)
        c.integer(f"{key}.steps")
        c.number(f"{key}.lr", 0.0, INF)
        c.integer(f"{key}.batch_size")

    @classmethod
    def create(cls, params, train_x, train_y, target, generator, **context):
        model = context["surrogate"]
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()  # BatchNorm in inference mode: the statistics are the surrogate's own
        grads = [p.requires_grad for p in model.parameters()]
        model.requires_grad_(False)  # only the perturbation is optimised

        c, h, w = train_x.shape[1:]
        eps, batch_size = float(params["eps"]), int(params["batch_size"])
        mask = lowpass_mask(h, w, float(params["cutoff"])).to(device)
        pool = torch.nonzero(train_y != target).flatten()  # target images teach nothing here
        goal = torch.full((batch_size,), target, dtype=torch.long, device=device)
        v = torch.zeros(c, h, w, device=device, requires_grad=True)
        lr = float(params["lr"])
        for _ in bar(range(int(params["steps"])), "lf: universal perturbation"):
            pick = pool[torch.randint(len(pool), (batch_size,), generator=generator)]
            x = train_x[pick].to(device).float() / 255.0
            loss = F.cross_entropy(model((x + bounded(v, mask, eps)).clamp(0, 1)), goal)
            (grad,) = torch.autograd.grad(loss, v)
            # Signed gradient steps (as in PGD): a step size that does not depend on the loss's
            # scale, and no torch.optim (whose first step costs seconds of import on a CPU).
            with torch.no_grad():
                v -= lr * grad.sign()

        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
        model.train(was_training)
        delta = bounded(v.detach(), mask, eps).cpu()
        return cls({"delta": delta}, params)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.tensors["delta"].to(x.dtype)).clamp(0, 1)
