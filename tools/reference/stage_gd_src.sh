#!/bin/sh
# Copy guided-diffusion-sdk's package source (guided_diffusion/) out of the venv
# into tools/reference/_vendor/ (git-ignored), so a machine without pip can run
# difface_unet.py / bench_torch.py with GUIDED_DIFFUSION_SRC=tools/reference/_vendor.
set -eu
VENV_PY=${VENV_PY:-/work/venv/bin/python}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$("$VENV_PY" -c 'import importlib.util, os; s = importlib.util.find_spec("guided_diffusion"); print(list(s.submodule_search_locations)[0])')
mkdir -p "$HERE/_vendor"
rm -rf "$HERE/_vendor/guided_diffusion"
cp -r "$SRC" "$HERE/_vendor/guided_diffusion"
rm -rf "$HERE/_vendor/guided_diffusion/__pycache__"
echo "staged $SRC -> $HERE/_vendor/guided_diffusion"
