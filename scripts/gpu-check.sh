#!/usr/bin/env bash
# The GPU check, run ON the GPU machine from the repository root, with gpu-bundle/ built by
# scripts/gpu-bundle.sh (no Rust needed here). Finds libcuda and libnvrtc (CUDA 13), runs
# every CUDA test binary (parity of every op, every conv/gemm kernel variant, the residual
# network with and without CUDA graph replay, the profiling table, the conv benchmark), then
# `dynface bench --device cuda` when the CLI has it, then compute-sanitizer memcheck,
# racecheck and synccheck on the parity table. The report starts with the commit the bundle
# was built from. Everything goes to $OUT/gpu-report.txt (OUT defaults to ./gpu-out).
# Exits non-zero when any test fails or is skipped (a skip here means the GPU was unusable).
set -uo pipefail
OUT="${OUT:-./gpu-out}"
mkdir -p "$OUT"
REPORT="$OUT/gpu-report.txt"
BUNDLE="${BUNDLE:-gpu-bundle}"
: >"$REPORT"
log() { echo "$@" | tee -a "$REPORT"; }
run() {  # run CMD..., output to terminal and report; returns the command's status
    "$@" 2>&1 | tee -a "$REPORT"
    return "${PIPESTATUS[0]}"
}

log "=== dynface GPU check $(date -u +%FT%TZ) bundle $(cat "$BUNDLE/COMMIT" 2>/dev/null || echo '?')"
log "commit: $(cat "$BUNDLE/COMMIT" 2>/dev/null || echo 'unknown: gpu-bundle/COMMIT missing')"
if [ ! -d "$BUNDLE/tests" ]; then
    log "no $BUNDLE/tests: build it on the development machine with scripts/gpu-bundle.sh"
    exit 2
fi
log "=== nvidia-smi"
run nvidia-smi || log "(nvidia-smi failed)"
log "=== ldconfig -p | grep -E 'cuda|nvrtc'"
ldconfig -p 2>/dev/null | grep -E "cuda|nvrtc" | tee -a "$REPORT" || true

# Library directories: CUDA 13 toolkit first, then the driver's, then pip wheels.
dirs=()
for d in /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/targets/x86_64-linux/lib \
         /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda*/lib64 \
         /usr/lib/x86_64-linux-gnu /usr/lib64; do
    [ -d "$d" ] && dirs+=("$d")
done
for py in python3 python; do
    command -v "$py" >/dev/null || continue
    for sp in $("$py" -c 'import site,sys; print(" ".join(site.getsitepackages()+[site.getusersitepackages()]))' 2>/dev/null); do
        for d in "$sp"/nvidia/cu13/lib "$sp"/nvidia/*/lib; do [ -d "$d" ] && dirs+=("$d"); done
    done
    break
done
libpath=""
found_nvrtc="" found_cuda=""
for d in "${dirs[@]}"; do
    add=""
    if [ -z "$found_nvrtc" ] && ls "$d"/libnvrtc.so.13* >/dev/null 2>&1; then found_nvrtc="$d"; add=1; fi
    if [ -z "$found_cuda" ] && ls "$d"/libcuda.so* >/dev/null 2>&1; then found_cuda="$d"; add=1; fi
    [ -n "$add" ] && libpath="${libpath:+$libpath:}$d"
done
if [ -z "$found_nvrtc" ]; then
    for d in "${dirs[@]}"; do
        if ls "$d"/libnvrtc.so* >/dev/null 2>&1; then found_nvrtc="$d"; libpath="${libpath:+$libpath:}$d"; break; fi
    done
fi
export LD_LIBRARY_PATH="${libpath}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DYNFACE_KERNEL_CACHE="${DYNFACE_KERNEL_CACHE:-$OUT/kernel-cache}"
export DYNFACE_NO_EMU=1  # on the GPU machine a missing GPU must show as a skip, not emulation
log "libcuda: ${found_cuda:-NOT FOUND}   libnvrtc: ${found_nvrtc:-NOT FOUND}"
log "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

status=0
for name in cuda_parity cuda_models tc_bf16 cuda_bench; do
    t="$BUNDLE/tests/$name"
    [ -x "$t" ] || { log "missing $t"; status=1; continue; }
    log "=== $name"
    start=$(date +%s)
    tmp="$OUT/$name.log"
    "$t" --test-threads=1 --nocapture 2>&1 | tee "$tmp" | tee -a "$REPORT"
    rc=${PIPESTATUS[0]}
    log "=== $name: exit $rc in $(( $(date +%s) - start )) s"
    [ "$rc" -eq 0 ] || status=1
    if grep -q "skipped:" "$tmp"; then
        log "=== $name: tests were SKIPPED on the GPU machine (GPU or libraries unusable)"
        status=1
    fi
done
if [ -x "$BUNDLE/bin/dynface" ] && "$BUNDLE/bin/dynface" --help 2>&1 | grep -qw bench; then
    log "=== dynface bench --device cuda"
    run "$BUNDLE/bin/dynface" bench --device cuda --skip-conv --profile --warmup 1 --reps 3 --json "$OUT/bench-cuda.json" || status=1
    # The bf16 tensor-core kernels (conv_tc.cu, gemm_tc.cu), same machine and call: the conv
    # table (forward and input gradient at bf16; weight gradient fp32) and the UNet timings.
    if [ "${GPU_CHECK_BF16:-1}" = 1 ] && "$BUNDLE/bin/dynface" bench --help 2>&1 | grep -q -- --precision; then
        log "=== dynface bench --device cuda --precision bf16"
        run "$BUNDLE/bin/dynface" bench --device cuda --precision bf16 --profile --warmup 1 --reps 3 --json "$OUT/bench-cuda-bf16.json" || status=1
    fi
    # The fused GroupNorm+SiLU against the op-by-op build, same card and call (batch 8).
    if [ "${GPU_CHECK_UNFUSED:-1}" = 1 ] && "$BUNDLE/bin/dynface" bench --help 2>&1 | grep -q -- --unfused-norm; then
        log "=== dynface bench --device cuda --unfused-norm (compare with the fp32 run above)"
        run "$BUNDLE/bin/dynface" bench --device cuda --skip-conv --unfused-norm --unet-batches 1,8 --warmup 1 --reps 3 --json "$OUT/bench-cuda-unfused.json" || status=1
    fi
else
    log "=== dynface bench: not in this CLI build (conv numbers are in cuda_bench above)"
fi
# compute-sanitizer on the parity table at its small shapes (it slows kernels 10-100×):
# memcheck (out-of-bounds, misaligned accesses) on the variant table (every conv / gemm entry
# point, each tile, split-K), the conv, blur and layout parity and the bf16 kernels; racecheck
# (shared-memory hazards) and synccheck (barriers under divergence) on the kernels that stage
# through shared memory: the variant table, the norms/softmax, the blur. Each run writes
# $OUT/<tool>-<filter>.log; a timeout is reported, not counted as a failure.
san=""
for c in compute-sanitizer /usr/local/cuda*/bin/compute-sanitizer; do
    command -v "$c" >/dev/null 2>&1 && { san="$c"; break; }
done
if [ -n "$san" ] && [ "${GPU_CHECK_SANITIZER:-1}" = 1 ]; then
    table=cuda_parity:every_conv_and_gemm_kernel_variant
    for run_spec in \
        "memcheck $table" "memcheck cuda_parity:case_table_conv2d" "memcheck cuda_parity:case_table_gaussian_blur" \
        "memcheck cuda_parity:case_table_layout" "memcheck tc_bf16:bf16_tensor_core" \
        "racecheck $table" "racecheck cuda_parity:case_table_norms" "racecheck cuda_parity:case_table_gaussian_blur" \
        "synccheck $table" "synccheck cuda_parity:case_table_norms" "synccheck cuda_parity:case_table_gaussian_blur"; do
        tool="${run_spec%% *}" spec="${run_spec#* }"
        bin="${spec%%:*}" filter="${spec#*:}"
        slog="$OUT/$tool-$bin-$filter.log"
        log "=== compute-sanitizer $tool: $bin $filter"
        timeout "${SANITIZER_TIMEOUT:-120}" "$san" --tool "$tool" --error-exitcode 9 \
            "$BUNDLE/tests/$bin" --test-threads=1 "$filter" >"$slog" 2>&1
        rc=$?
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Invalid|hazard|Barrier|test result" "$slog" | tee -a "$REPORT"
        # A run whose filter matched no test proves nothing.
        if grep -q "running 0 tests" "$slog"; then
            log "$tool $bin $filter: no test matched the filter"; status=1
        fi
        case $rc in
            0) ;;
            124) log "$tool $bin $filter: timed out after ${SANITIZER_TIMEOUT:-120} s (not counted)";;
            *) log "$tool $bin $filter: FAILED (exit $rc), see $slog"; status=1;;
        esac
    done
else
    log "=== compute-sanitizer: not found or disabled (GPU_CHECK_SANITIZER=0)"
fi
log "=== summary"
log "$(grep -hE '^test result|^ *FAIL|panicked|skipped:' "$OUT"/cuda_*.log "$OUT"/tc_bf16.log 2>/dev/null)"
log "gpu-check: $([ $status -eq 0 ] && echo PASSED || echo FAILED) (report: $REPORT)"
exit $status
