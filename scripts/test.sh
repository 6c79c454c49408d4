#!/usr/bin/env bash
# The project's one test command (README): installs what the tests need that cargo does not
# bring (NVRTC, to compile-check every CUDA kernel without a GPU), then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .ci/install-nvrtc.sh ]; then
    eval "$(bash .ci/install-nvrtc.sh)"
fi
# The HTML report test opens the page in headless Chromium (tests/html_report.rs).
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update && apt-get install -y --no-install-recommends chromium
fi
# The per-kernel table of registers, shared memory and spills, in the log for everyone to see
# (the same check also runs, silently, as part of the suite below).
cargo test --test kernels_check -- --nocapture
# The GPU-only model tests say "skipped: <why>" on a machine without a GPU; shown here so the
# log never passes them off as GPU results.
cargo test --test cuda_models -- --nocapture 2>&1 | grep -E "skipped:|^test |test result" || true
cargo test --workspace -- --test-threads=2
