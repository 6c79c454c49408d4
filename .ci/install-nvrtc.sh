#!/usr/bin/env bash
# Installs NVRTC 13.0 (the CUDA run-time compiler, no GPU needed) from its PyPI wheel into
# .nvrtc/ of the repository (git-ignored), for `dynface kernels check` and
# tests/kernels_check.rs. Prints the line to export. Pinned to 13.0.x: PTX from a newer
# NVRTC may not load on a CUDA 13.0 driver.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="$PWD/.nvrtc"
LIB="$DEST/nvidia/cu13/lib"
if [ ! -e "$LIB/libnvrtc.so.13" ]; then
    python3 -m pip install --quiet --no-deps --target "$DEST" "nvidia-cuda-nvrtc==13.0.88" >&2
fi
test -e "$LIB/libnvrtc.so.13" || { echo "install-nvrtc: $LIB/libnvrtc.so.13 missing after install" >&2; exit 1; }
echo "export LD_LIBRARY_PATH=$LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
