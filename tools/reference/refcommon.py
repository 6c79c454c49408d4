"""Helpers shared by the golden-fixture generators.

Every fixture follows one rule: weights and inputs are drawn in float32 (so the
stored f32 values are exactly the ones the reference used), the reference is
then computed in float64, and the results are rounded to float32 for storage.
A Rust engine running in f32 should therefore match to f32 rounding noise,
and one running in f64 should match to about 1e-7 relative.
"""

import contextlib
import json
import os

import torch

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")


def generator(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def randn(shape, g, std=1.0):
    return torch.randn(shape, generator=g, dtype=torch.float32) * std


def uniform(shape, g, lo, hi):
    return torch.rand(shape, generator=g, dtype=torch.float32) * (hi - lo) + lo


def randomize_(module, g, bias_std=0.1, norm_std=0.2, extra=None):
    """Overwrite every parameter with seeded random f32 values scaled so that
    activations stay O(1): weights N(0, 1/fan_in), norm gains 1 + N(0, norm_std²),
    biases N(0, bias_std²). Zero-initialised layers (guided-diffusion zeroes
    out_layers.3, proj_out and the final conv) get random values too, otherwise
    half of the network would be invisible to the test.

    `extra(name, param)` may return a tensor to override the default for a
    parameter (e.g. relative position bias tables)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            value = extra(name, p) if extra is not None else None
            if value is None:
                if p.ndim >= 2:
                    fan_in = p[0].numel()
                    value = randn(p.shape, g, 1.0 / fan_in**0.5)
                elif name.endswith("weight"):
                    value = 1.0 + randn(p.shape, g, norm_std)
                else:
                    value = randn(p.shape, g, bias_std)
            p.copy_(value.to(p.dtype))


@contextlib.contextmanager
def float64_everywhere():
    """guided-diffusion calls `.float()` inside GroupNorm32, the attention softmax
    and the timestep embedding, which would silently drop an fp64 reference to
    fp32 in those places. While active, `.float()` on a float64 tensor is a no-op,
    so the whole reference runs in fp64 without editing the third-party code."""
    original = torch.Tensor.float

    def keep_double(self, *args, **kwargs):
        if self.dtype == torch.float64:
            return self
        return original(self, *args, **kwargs)

    torch.Tensor.float = keep_double
    try:
        yield
    finally:
        torch.Tensor.float = original


def state_dict_f32(module):
    """The state dict as contiguous f32 CPU tensors (integer buffers kept as they are)."""
    out = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu()
        if v.is_floating_point():
            v = v.to(torch.float32)
        out[k] = v.contiguous()
    return out


def to_f32(tensors):
    return {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def dir_size(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def vjp(fn, inputs, cotangent):
    """Run fn(*inputs) in fp64 and return (output, grads of <output, cotangent>
    w.r.t. each input)."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, cotangent)
    return out.detach(), [gr.detach() for gr in grads]
