#!/usr/bin/env bash
# Builds, on a development machine, everything the GPU check needs into gpu-bundle/
# (git-ignored; the GPU machines have no Rust toolchain): the release CLI, the release test
# binaries of the CUDA tests, the kernel sources and run-all.sh. Then run, on the GPU machine
# from the repository root:  bash scripts/gpu-check.sh   (see scripts/gpu.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=gpu-bundle
TESTS=(cuda_parity cuda_models cuda_bench tc_bf16 kernels_check)
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/tests"

cargo build --release --bin dynface
cp target/release/dynface "$OUT/bin/dynface"

args=()
for t in "${TESTS[@]}"; do args+=(--test "$t"); done
cargo test --release --no-run "${args[@]}" --message-format=json >"$OUT/.build.json"
# Each test target's executable, by target name.
python3 - "$OUT" <<'PY'
import json, shutil, sys, os
out = sys.argv[1]
for line in open(os.path.join(out, ".build.json")):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        dst = os.path.join(out, "tests", m["target"]["name"])
        shutil.copy2(m["executable"], dst)
        print("bundled", dst)
PY
rm -f "$OUT/.build.json"
strip "$OUT"/bin/* "$OUT"/tests/* 2>/dev/null || true
for t in "${TESTS[@]}"; do
    test -x "$OUT/tests/$t" || { echo "gpu-bundle: test binary $t missing" >&2; exit 1; }
done
cp -r kernels "$OUT/kernels"
# The commit, marked -dirty when the working tree differs from it (the bundle then holds
# uncommitted code).
{ git rev-parse HEAD 2>/dev/null || echo unknown; } | tr -d '\n' >"$OUT/COMMIT"
git diff --quiet HEAD 2>/dev/null || echo -n "-dirty" >>"$OUT/COMMIT"
echo >>"$OUT/COMMIT"

cat >"$OUT/run-all.sh" <<'RUN'
#!/usr/bin/env bash
# Runs every bundled test binary (libcuda/libnvrtc must be on LD_LIBRARY_PATH; prefer
# scripts/gpu-check.sh, which finds them and writes a report). Exit status: failures.
cd "$(dirname "$0")"
fail=0
for t in tests/*; do
    echo "=== $t"
    "$t" --test-threads=1 --nocapture || fail=1
done
exit $fail
RUN
chmod +x "$OUT/run-all.sh"

size=$(du -sm "$OUT" | cut -f1)
echo "gpu-bundle: ${size} MiB in $OUT ($(cat "$OUT/COMMIT"))"
if [ "$size" -ge 64 ]; then
    echo "gpu-bundle: larger than 64 MiB" >&2
    exit 1
fi
