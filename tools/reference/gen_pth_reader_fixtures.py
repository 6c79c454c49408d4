#!/usr/bin/env python3
"""Generate tiny PyTorch checkpoints for the Rust .pth reader tests.

Run with a Python that has torch:  python tools/reference/gen_pth_reader_fixtures.py
Writes tests/fixtures/pth/reader/*.pth plus expected.json (values as torch sees them).
The files are made by torch.save itself, so the Rust reader is checked against
the real format rather than against its own writer. evil*.pth holds a pickle whose
__reduce__ names os.system; it is written, never loaded.
"""
import collections
import json
import os
import sys

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "pth", "reader")
OUT = os.path.normpath(OUT)


def describe(t):
    t = t.detach()
    flat = t.contiguous().reshape(-1)
    if t.dtype == torch.bool:
        values = [int(x) for x in flat.tolist()]
    elif t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        # Exact: every half/f32 value is an f64, and json writes shortest round-trip reprs.
        values = [float(x) for x in flat.double().tolist()]
    else:
        values = [int(x) for x in flat.tolist()]
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "values": values}


def flat_tensors(d, prefix=""):
    out = collections.OrderedDict()
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            out[name] = describe(v)
        elif isinstance(v, dict):
            out.update(flat_tensors(v, name + "."))
    return out


def main():
    torch.manual_seed(1234)
    os.makedirs(OUT, exist_ok=True)
    expected = {}

    def save(name, obj, tensors, legacy=False, wrapper=None, key=None):
        path = os.path.join(OUT, name)
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        expected[name] = {
            "format": "legacy" if legacy else "zip",
            "wrapper": wrapper,
            "key": key,
            "tensors": flat_tensors(tensors),
        }
        expected[name]["order"] = list(expected[name]["tensors"].keys())

    basic = collections.OrderedDict()
    basic["conv.weight"] = torch.randn(4, 3, 3, 3)
    basic["conv.bias"] = torch.randn(4)
    basic["param"] = torch.nn.Parameter(torch.randn(2, 5))
    basic["index"] = torch.randint(-(2**40), 2**40, (3, 4), dtype=torch.int64)
    basic["double"] = torch.randn(5, dtype=torch.float64)
    basic["int32"] = torch.randint(-1000, 1000, (6,), dtype=torch.int32)
    basic["bytes"] = torch.randint(0, 256, (7,), dtype=torch.uint8)
    basic["mask"] = torch.rand(2, 3) > 0.5
    basic["scalar"] = torch.tensor(3.25)
    basic["empty"] = torch.zeros(0, 5)
    for legacy in (False, True):
        save(f"basic_{'legacy' if legacy else 'zip'}.pth", basic, basic, legacy)

    halfs = collections.OrderedDict()
    halfs["h"] = torch.randn(3, 4).half()
    halfs["b"] = torch.randn(2, 6).bfloat16()
    for legacy in (False, True):
        save(f"half_{'legacy' if legacy else 'zip'}.pth", halfs, halfs, legacy)

    base = torch.randn(6, 8)
    views = collections.OrderedDict()
    views["base"] = base
    views["transposed"] = base.t()
    views["slice"] = base[1:4, 2:7]
    views["strided"] = base[:, ::3]
    views["expanded"] = torch.randn(3, 1).expand(3, 4)
    views["offset_row"] = base[5]
    for legacy in (False, True):
        save(f"views_{'legacy' if legacy else 'zip'}.pth", views, views, legacy)

    inner = collections.OrderedDict()
    inner["module.x.weight"] = torch.randn(3, 2)
    inner["module.x.bias"] = torch.randn(3)
    inner["module.bn.num_batches_tracked"] = torch.tensor(17, dtype=torch.int64)
    other = collections.OrderedDict((k, torch.randn(v.shape)) for k, v in inner.items() if v.is_floating_point())
    save("wrapped_params_ema.pth", {"params": other, "params_ema": inner, "iter": 7}, inner, wrapper="params_ema")

    sd = collections.OrderedDict([("a", torch.randn(2, 2)), ("b", torch.randn(3))])
    save("wrapped_state_dict.pth", {"epoch": 3, "state_dict": sd, "best": 0.5}, sd, wrapper="state_dict")
    save("custom_key.pth", {"net_g": sd, "meta": {"note": "x"}}, sd, wrapper="net_g", key="net_g")

    nested = {"enc": {"w": torch.randn(2, 3)}, "dec": {"w": torch.randn(3, 2), "b": torch.randn(2)}}
    save("nested_model.pth", {"model": nested}, nested, wrapper="model")

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
    net[1].num_batches_tracked += 5
    save("nn_module_state.pth", net.state_dict(), net.state_dict())

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo this must never run > /tmp/dynface_pwned",))

    for legacy in (False, True):
        name = f"evil_{'legacy' if legacy else 'zip'}.pth"
        torch.save({"w": torch.randn(2), "payload": Evil()}, os.path.join(OUT, name),
                   _use_new_zipfile_serialization=not legacy)
        expected[name] = {"format": "legacy" if legacy else "zip", "refused_global": "system"}

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"torch_version": torch.__version__, "files": expected}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(expected)} fixtures to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
