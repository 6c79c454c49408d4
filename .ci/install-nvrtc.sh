#!/usr/bin/env bash
# Installs NVRTC 13.0 (the CUDA run-time compiler, no GPU needed) from its PyPI wheel into
# .nvrtc/ of the repository (git-ignored), for `dynface kernels check` and
# tests/kernels_check.rs. Prints the line to export on stdout; on any failure prints why on
# stderr, prints nothing on stdout and exits non-zero (so `eval` never runs half an answer).
# Pinned to 13.0.x: PTX from a newer NVRTC may not load on a CUDA 13.0 driver.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="$PWD/.nvrtc"
LIB="$DEST/nvidia/cu13/lib"
WHEEL="nvidia-cuda-nvrtc==13.0.88"
if [ ! -e "$LIB/libnvrtc.so.13" ]; then
    if ! command -v python3 >/dev/null 2>&1; then
        echo "install-nvrtc: python3 not found: cannot pip-install $WHEEL into $DEST" >&2
        exit 1
    fi
    if ! python3 -m pip install --quiet --no-deps --target "$DEST" "$WHEEL" >&2; then
        echo "install-nvrtc: pip install $WHEEL into $DEST failed (see above)" >&2
        exit 1
    fi
fi
test -e "$LIB/libnvrtc.so.13" || {
    echo "install-nvrtc: $LIB/libnvrtc.so.13 missing after installing $WHEEL" >&2
    exit 1
}
echo "export LD_LIBRARY_PATH=$LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
