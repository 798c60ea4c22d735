#!/usr/bin/env bash
# Run every refocus benchmark beside its PyTorch twin, in one go on the same machine, and print the ratios.
# usage: bench/run_all.sh [BUILD_DIR] [DEVICE]    (DEVICE: cpu or cuda; default cpu)
set -euo pipefail
BUILD=${1:-build}
DEV=${2:-cpu}
PY=${PYTHON:-/usr/bin/python3}
THREADS=$(nproc)
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
"$BUILD/bin/bench_engine" --device "$DEV" --threads "$THREADS" >"$out/ours.jsonl"
"$BUILD/bin/bench_reduce" --device "$DEV" --threads "$THREADS" >>"$out/ours.jsonl"
# One defocused image for both fits (256x256 on the CPU, 1680x1120 on the GPU).
size=256x256; [ "$DEV" = cuda ] && size=1120x1680
"$BUILD/bin/make_synth" --out "$out/img" --n 1 --size "$size" --seed 3 2>/dev/null
img="$out/img/train_c/source/synth_00000.png"
"$BUILD/bin/bench_gs" --device "$DEV" --threads "$THREADS" --image "$img" ${FIT_ITERS:+--fit-iters $FIT_ITERS} >>"$out/ours.jsonl"
if "$PY" -c 'import torch' 2>/dev/null; then
  "$PY" "$here/bench_engine_torch.py" --device "$DEV" --threads "$THREADS" >"$out/torch.jsonl"
  "$PY" "$here/bench_reduce_torch.py" --device "$DEV" --threads "$THREADS" >>"$out/torch.jsonl"
  # TORCH_FIT_ITERS: time fewer iterations of the (slow) PyTorch fit; the table scales it to FIT_ITERS.
  "$PY" "$here/bench_gs_torch.py" --device "$DEV" --threads "$THREADS" --image "$img" \
      --fit-iters "${TORCH_FIT_ITERS:-${FIT_ITERS:-600}}" >>"$out/torch.jsonl"
else
  echo "PyTorch not importable by $PY: refocus timings only" >&2
  : >"$out/torch.jsonl"
fi
"$PY" - "$out/ours.jsonl" "$out/torch.jsonl" <<'PYEOF'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1])]
theirs = {}
for j in (json.loads(l) for l in open(sys.argv[2]) if l.strip()):
    if j["name"].startswith("gs fit "):  # scale a shortened PyTorch fit to the iterations refocus ran
        it = int(j["name"].split()[2])
        mine = next((o for o in ours if o["name"].startswith("gs fit ")), None)
        if mine:
            it_mine = int(mine["name"].split()[2])
            if it != it_mine:
                j["ms"] = j["ms"] * it_mine / it
                print(f"(PyTorch fit timed over {it} iterations, scaled to {it_mine}; its PSNR is after {it})")
            j["name"] = mine["name"]
    theirs[j["name"]] = j
print(f"{'case':48s} {'device':6s} {'refocus ms':>11s} {'torch ms':>9s} {'ratio':>6s}")
for o in ours:
    t = theirs.get(o["name"])
    r = f"{o['ms'] / t['ms']:.2f}" if t else "-"
    print(f"{o['name']:48s} {o['device']:6s} {o['ms']:11.2f} {t['ms'] if t else float('nan'):9.2f} {r:>6s}")
PYEOF
# Peak memory: each case in its own process, refocus then PyTorch (growth of the peak resident set).
echo
echo "peak memory (growth of the process's peak resident set over its baseline; refocus's tensor bytes too)"
for c in adds unet gs; do
  "$BUILD/bin/bench_memory" --case "$c" --device "$DEV" | sed 's/^/refocus /'
  if [ "$c" != gs ] && "$PY" -c 'import torch' 2>/dev/null; then
    "$PY" "$here/bench_memory_torch.py" --case "$c" --device "$DEV" --threads "$THREADS" | sed 's/^/torch   /'
  fi
done
rm -rf "$out"
