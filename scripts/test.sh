#!/usr/bin/env bash
# The project's one test command (README): installs what the tests need that cargo does not
# bring (NVRTC, to compile-check every CUDA kernel without a GPU), checks the rest is there
# (a host C++ compiler for the kernel emulator, the ../shared face data), then runs the suite.
#
# In CI (CI=true) anything missing fails the run, naming it; on a developer's machine it is a
# loud "skipped:" line and the tests that need it skip. Every test that skips records why in
# target/test-skips.tsv (dynface::check::skip); the run ends with those records and their count
# by reason, so no skip passes unseen.
#
#   bash scripts/test.sh                      # the whole suite (what CI runs)
#   bash scripts/test.sh --test cuda_parity   # only these cargo test targets, same checks
set -euo pipefail
cd "$(dirname "$0")/.."
ci=false
if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; then ci=true; fi
missing() { # $1: what is missing, $2: what it costs and how to get it
    if $ci; then
        echo "test.sh: FAILED: CI needs $1: $2" >&2
        exit 1
    fi
    echo "skipped: test.sh: $1 is missing: $2" >&2
}

if nvrtc_env="$(bash .ci/install-nvrtc.sh)"; then
    eval "$nvrtc_env"
else
    missing "NVRTC (libnvrtc.so.13)" ".ci/install-nvrtc.sh failed (above); without it no CUDA kernel is compile-checked"
fi
cxx="${CXX:-g++}"
if ! command -v "$cxx" >/dev/null 2>&1; then
    missing "a host C++ compiler ($cxx)" "the kernel emulator cannot be built, so no CUDA kernel's arithmetic is checked without a GPU; install g++ or set CXX"
fi
# The HTML report test opens the page in headless Chromium (tests/html_report.rs).
if ! command -v chromium >/dev/null 2>&1; then
    (apt-get update && apt-get install -y --no-install-recommends chromium) >&2 ||
        missing "Chromium (/usr/bin/chromium)" "apt-get install chromium failed; the HTML report is not checked in a browser"
fi
if [ ! -d ../shared/data/faces/hq ] || [ ! -d ../shared/data/faces/real_lq ]; then
    missing "the shared face data (../shared/data/faces/{hq,real_lq})" "the tests on real faces cannot run; check out the shared data next to the repository"
fi

mkdir -p target
export DYNFACE_SKIP_LOG="$PWD/target/test-skips.tsv"
: >"$DYNFACE_SKIP_LOG"
status=0
if [ $# -eq 0 ]; then
    # The per-kernel table of registers, shared memory and spills, in the log for everyone
    # to see (the same check also runs, silently, as part of the suite below).
    cargo test --test kernels_check -- --nocapture || status=$?
    cargo test --workspace --no-fail-fast -- --test-threads=2 || status=$?
else
    cargo test --no-fail-fast "$@" -- --test-threads=2 || status=$?
fi

# One line per skip record (reason, test, why), then the count by reason.
n_skips=$(wc -l <"$DYNFACE_SKIP_LOG")
echo "---- skipped checks ($n_skips, from $DYNFACE_SKIP_LOG)"
if [ "$n_skips" -gt 0 ]; then
    sort "$DYNFACE_SKIP_LOG" | uniq | awk -F'\t' '{ printf "skipped: [%s] %s: %s\n", $1, $2, $3 }'
    echo "skips by reason: $(cut -f1 "$DYNFACE_SKIP_LOG" | sort | uniq -c | awk '{ printf "%s%s %s", sep, $2, $1; sep = ", " }')"
else
    echo "skips by reason: none"
fi
exit "$status"
