"""Load basicsr 1.4.2's `basicsr/archs/swinir_arch.py` on its own.

Importing the `basicsr` package runs its __init__, which pulls torchvision,
OpenCV, lmdb and more. The SwinIR file itself needs only torch plus three
names from the package: ARCH_REGISTRY (a decorator here), to_2tuple and
trunc_normal_ (init only; every fixture overwrites the weights anyway). This
module registers small stand-ins for those under the basicsr module names and
executes the unmodified file from the installed package (found without
importing it), or from $BASICSR_SWINIR_FILE.
"""

import collections.abc
import importlib.util
import os
import sys
import types

import torch


def _stub_modules():
    def to_2tuple(x):
        if isinstance(x, collections.abc.Iterable) and not isinstance(x, str):
            return tuple(x)
        return (x, x)

    def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
        return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)

    class _Registry:
        def register(self, obj=None):
            if obj is None:
                return lambda o: o
            return obj

    def package(name):
        mod = types.ModuleType(name)
        mod.__path__ = []
        return mod

    registry = types.ModuleType("basicsr.utils.registry")
    registry.ARCH_REGISTRY = _Registry()
    arch_util = types.ModuleType("basicsr.archs.arch_util")
    arch_util.to_2tuple = to_2tuple
    arch_util.trunc_normal_ = trunc_normal_
    return {
        "basicsr": package("basicsr"),
        "basicsr.utils": package("basicsr.utils"),
        "basicsr.utils.registry": registry,
        "basicsr.archs": package("basicsr.archs"),
        "basicsr.archs.arch_util": arch_util,
    }


def swinir_arch_path():
    override = os.environ.get("BASICSR_SWINIR_FILE")
    if override:
        return override
    spec = importlib.util.find_spec("basicsr")  # locates, does not execute
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("basicsr is not installed (pip install --no-deps basicsr==1.4.2)")
    return os.path.join(list(spec.submodule_search_locations)[0], "archs", "swinir_arch.py")


def load():
    """Return the executed swinir_arch module (WindowAttention, SwinTransformerBlock, RSTB, SwinIR...)."""
    name = "basicsr.archs.swinir_arch"
    if name in sys.modules:
        return sys.modules[name]
    path = swinir_arch_path()  # before the stubs shadow the real package
    stubs = _stub_modules()
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module
