"""Tiny PyTorch checkpoints for the Rust .pth reader tests (tests/fixtures/pth/).

Each `<name>.pth` has beside it `<name>.expected.safetensors`: every tensor the
reader should return, under its key in the state dict (inside the wrapper
dict where there is one; a `module.` prefix is kept), as contiguous values in
the stored dtype. Keys like `0.weight` come from an nn.Sequential. index.json
lists each file with its format, wrapper key, key prefix and what it tests.

`malicious_*.pth` contain a pickle that would call os.system if unpickled with
an unrestricted unpickler. They are written with a custom __reduce__ and are
NEVER loaded here; the script only disassembles them (pickletools, which does
not execute) to show the forbidden global. A safe reader must refuse them.

The legacy-format files are not byte-identical between runs: torch names their
storages by memory address. Their tensors are the same every run.

Run: /work/venv/bin/python tools/reference/gen_pth_fixtures.py
"""

import io
import os
import pickle
import pickletools
import sys
import zipfile
from collections import OrderedDict

import torch
import torch.nn as nn
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refcommon as rc  # noqa: E402

OUT_DIR = os.path.join(rc.FIXTURES, "pth")
HARMLESS_COMMAND = "echo dynface-malicious-pth-fixture-was-EXECUTED"


class _RunsShellOnLoad:
    """Unpickling this calls os.system(HARMLESS_COMMAND)."""

    def __reduce__(self):
        return (os.system, (HARMLESS_COMMAND,))


def tiny_module_state_dict(g):
    """A real nn.Module state dict: an OrderedDict carrying `_metadata`, with a
    BatchNorm's 0-d int64 `num_batches_tracked` among the tensors."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(5, 2))
    rc.randomize_(model, g)
    with torch.no_grad():
        model[1].running_mean.copy_(rc.randn((4,), g))
        model[1].running_var.copy_(rc.uniform((4,), g, 0.5, 2.0))
        model[1].num_batches_tracked.fill_(1234)
    return model.state_dict()


def expected(sd):
    return {k: v.detach().clone().contiguous() for k, v in sd.items() if isinstance(v, torch.Tensor)}


def save_pair(name, obj, tensors, legacy=False):
    path = os.path.join(OUT_DIR, f"{name}.pth")
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    save_file(expected(tensors), os.path.join(OUT_DIR, f"{name}.expected.safetensors"))
    return path


def verify(path, wrapper, want):
    """Round-trip through torch's own safe loader (weights_only) as a check."""
    got = torch.load(path, weights_only=True)
    if wrapper:
        got = got[wrapper]
    for k, v in want.items():
        assert torch.equal(got[k], v), f"{path}: {k} differs after reload"
        assert got[k].dtype == v.dtype


def write_malicious():
    """Two variants: a torch zip archive whose data.pkl calls os.system, and a
    bare pickle stream (what a legacy-format reader starts with)."""
    evil = {"weight": torch.ones(2, 2), "payload": _RunsShellOnLoad()}
    zip_path = os.path.join(OUT_DIR, "malicious_zip.pth")
    torch.save(evil, zip_path)  # pickles the object, does not run it
    raw_path = os.path.join(OUT_DIR, "malicious_raw_pickle.pth")
    with open(raw_path, "wb") as f:
        pickle.dump({"payload": _RunsShellOnLoad()}, f, protocol=2)

    with zipfile.ZipFile(zip_path) as z:
        pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
        zip_pickle = z.read(pkl)
    with open(raw_path, "rb") as f:
        raw_pickle = f.read()
    for label, blob in (("zip data.pkl", zip_pickle), ("raw", raw_pickle)):
        listing = io.StringIO()
        pickletools.dis(blob, out=listing)
        globals_seen = [
            line.split("GLOBAL", 1)[1].strip()
            for line in listing.getvalue().splitlines()
            if "GLOBAL" in line
        ]
        assert any("system" in gl for gl in globals_seen), globals_seen
        print(f"  malicious ({label}): globals {globals_seen}")


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    g = rc.generator(3000)
    index = []

    sd = tiny_module_state_dict(g)
    p = save_pair("zip_state_dict", sd, sd)
    verify(p, None, expected(sd))
    index.append(dict(file="zip_state_dict.pth", format="zip", wrapper=None, prefix="",
                      tests="default torch.save of a module state dict (OrderedDict with _metadata, 0-d int64)"))

    p = save_pair("legacy_state_dict", sd, sd, legacy=True)
    verify(p, None, expected(sd))
    index.append(dict(file="legacy_state_dict.pth", format="legacy", wrapper=None, prefix="",
                      tests="_use_new_zipfile_serialization=False: magic, protocol, sys-info pickles, then storages"))

    wrapped = {"state_dict": sd, "epoch": 7, "note": "wrapper"}
    p = save_pair("wrapped_state_dict", wrapped, sd)
    verify(p, "state_dict", expected(sd))
    index.append(dict(file="wrapped_state_dict.pth", format="zip", wrapper="state_dict", prefix="",
                      tests="tensors under a top-level key beside non-tensor entries"))

    prefixed = OrderedDict((f"module.{k}", v) for k, v in sd.items())
    p = save_pair("module_prefix", prefixed, prefixed)
    verify(p, None, expected(prefixed))
    index.append(dict(file="module_prefix.pth", format="zip", wrapper=None, prefix="module.",
                      tests="DataParallel-style key prefix, as in DifFace's checkpoints"))

    # SwinIR-like buffers: int64 index table, and half-precision tensors.
    ws = 2
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    rel_index = (rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]).contiguous()
    mixed = OrderedDict(
        relative_position_index=rel_index,
        attn_mask=torch.tensor([[0.0, -100.0], [-100.0, 0.0]]),
        half=rc.randn((3, 5), g).to(torch.float16),
        bfloat=rc.randn((2, 3, 2), g).to(torch.bfloat16),
        float64=rc.randn((4,), g).to(torch.float64),
    )
    p = save_pair("dtypes", mixed, mixed)
    verify(p, None, expected(mixed))
    index.append(dict(file="dtypes.pth", format="zip", wrapper=None, prefix="",
                      tests="int64 relative_position_index, f16, bf16, f64"))

    # Views that share one storage: offsets and non-unit strides on disk.
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.5 - 3.0
    views = OrderedDict(
        base=base,
        transposed=base.t(),  # [6,4], strides (1,6)
        row_slice=base[1:3],  # offset 6
        column=base[:, 2],  # [4], offset 2, stride 6
        strided=base[::2, 1::2],  # [2,3], offset 1, strides (12,2)
    )
    p = save_pair("views", views, views)
    verify(p, None, expected(views))
    p = save_pair("views_legacy", views, views, legacy=True)
    verify(p, None, expected(views))
    for fmt, name in (("zip", "views.pth"), ("legacy", "views_legacy.pth")):
        index.append(dict(file=name, format=fmt, wrapper=None, prefix="",
                          tests="tensors saved as strided views of one shared storage (offset, stride)"))

    write_malicious()
    for name in ("malicious_zip.pth", "malicious_raw_pickle.pth"):
        index.append(dict(file=name, format="zip" if "zip" in name else "raw-pickle", wrapper=None,
                          prefix="", expect="error",
                          tests="pickle GLOBAL posix.system (os.system): must be refused, never executed"))

    for entry in index:
        if entry.get("expect") != "error":
            entry["expected"] = entry["file"].replace(".pth", ".expected.safetensors")
    rc.write_json(os.path.join(OUT_DIR, "index.json"), {"files": index})
    for entry in index:
        size = os.path.getsize(os.path.join(OUT_DIR, entry["file"]))
        print(f"{entry['file']:28s} {size:6d} bytes  {entry['tests']}")
    print(f"tests/fixtures/pth total {rc.dir_size(OUT_DIR) / 1e3:.1f} KB")


if __name__ == "__main__":
    main()
