#!/usr/bin/env bash
# The project's one test command (README): installs what the tests need that cargo does not
# bring (NVRTC, to compile-check every CUDA kernel without a GPU), then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .ci/install-nvrtc.sh ]; then
    eval "$(bash .ci/install-nvrtc.sh)"
fi
cargo test --workspace -- --test-threads=2
