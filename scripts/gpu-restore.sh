#!/usr/bin/env bash
# Whole-restoration timings for issue 9, run ON the GPU machine from the repository root with
# gpu-bundle/ (scripts/gpu-bundle.sh) after scripts/gpu-check.sh has found the libraries (it
# is sourced the same way: set LD_LIBRARY_PATH as gpu-check.sh prints it, or let this script
# look in the usual places). Full-size architectures with random weights (the real checkpoints
# are not reachable from the GPU machine), synthetic 512² inputs (no face data), DSST start
# steps, the full preset. Writes $OUT/restore-*.json reports and a summary line per run:
# images per second and ms per guided step.
#   RUNS="fp32-b8 bf16-b8 host-b1 device-b1" (default: all four); N8 images for batch 8.
set -uo pipefail
OUT="${OUT:-./gpu-out}"
BUNDLE="${BUNDLE:-gpu-bundle}"
BIN="$BUNDLE/bin/dynface"
RUNS="${RUNS:-fp32-b8 bf16-b8 host-b1 device-b1}"
N8="${N8:-8}"
mkdir -p "$OUT"
if [ -z "${LD_LIBRARY_PATH:-}" ]; then
    for d in /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu; do
        [ -d "$d" ] && LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"
    done
    export LD_LIBRARY_PATH
fi
export DYNFACE_KERNEL_CACHE="${DYNFACE_KERNEL_CACHE:-$OUT/kernel-cache}"
W="$OUT/weights-ffhq512"
IN="$OUT/inputs"
[ -f "$W/models.json" ] || "$BIN" weights random --preset ffhq512 -o "$W" || exit 1
# Synthetic inputs: smooth colour fields with a blurred disc, written with the standard
# library only (the GPU machine may lack PIL).
python3 - "$IN" "$N8" <<'PY'
import math, os, struct, sys, zlib
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
S = 512
for k in range(n):
    rows = []
    for y in range(S):
        row = bytearray([0])
        for x in range(S):
            d = math.hypot(x - 256 - 9 * k, y - 240) / 150.0
            v = 1.0 / (1.0 + math.exp(8 * (d - 1)))
            row += bytes(int(40 + 180 * v * c + 20 * math.sin((x + 3 * y + 40 * k) / 37.0)) & 255
                         for c in (0.95, 0.75, 0.6))
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows), 6)
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", S, S, 8, 2, 0, 0, 0)) \
        + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    open(os.path.join(out, f"synthetic{k:02d}.png"), "wb").write(png)
PY
mkdir -p "$OUT/in1" && cp "$IN"/synthetic00.png "$IN"/synthetic01.png "$OUT/in1/"
status=0
for run in $RUNS; do
    case $run in
        fp32-b8) args=(--batch 8 --precision fp32 --step-on device); in="$IN";;
        bf16-b8) args=(--batch 8 --precision bf16 --step-on device); in="$IN";;
        host-b1) args=(--batch 1 --precision fp32 --step-on host); in="$OUT/in1";;
        device-b1) args=(--batch 1 --precision fp32 --step-on device); in="$OUT/in1";;
        *) echo "unknown run $run"; status=1; continue;;
    esac
    echo "=== restore $run: ${args[*]}"
    "$BIN" restore "$in" -o "$OUT/restored-$run" --weights "$W" --device cuda --overwrite --quiet \
        --report "$OUT/restore-$run.json" "${args[@]}" || status=1
    python3 - "$OUT/restore-$run.json" "$run" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ims = [i for i in r["images"] if i.get("seconds")]
if not ims:
    print(sys.argv[2], "no restored image"); sys.exit(0)
total = r["seconds"]
print(f"{sys.argv[2]}: {len(ims)} images in {total:.1f} s = {len(ims)/total:.3f} images/s "
      f"({total/len(ims):.2f} s/image; paper: 91.8 s/image); sample stage {ims[0]['seconds']['sample']:.1f} s per batch")
PY
done
exit $status
