#!/usr/bin/env bash
# Run every refocus benchmark beside its PyTorch twin, in one go on the same machine, and print the ratios.
# usage: bench/run_all.sh [BUILD_DIR] [DEVICE]    (DEVICE: cpu or cuda; default cpu)
#        ONLY=reduce bench/run_all.sh ...           (just one benchmark and its twin: engine, conv, reduce, gs, memory)
set -euo pipefail
BUILD=${1:-build}
DEV=${2:-cpu}
PY=${PYTHON:-/usr/bin/python3}
THREADS=$(nproc)
ONLY=${ONLY:-}
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
: >"$out/ours.jsonl"
: >"$out/torch.jsonl"
want engine && "$BUILD/bin/bench_engine" --device "$DEV" --threads "$THREADS" >>"$out/ours.jsonl"
[ "$DEV" = cpu ] && want conv && "$BUILD/bin/bench_conv" --threads "$THREADS" >>"$out/ours.jsonl"
want reduce && "$BUILD/bin/bench_reduce" --device "$DEV" --threads "$THREADS" >>"$out/ours.jsonl"
if want gs; then
  # One defocused image for both fits (256x256 on the CPU, 1680x1120 on the GPU).
  size=256x256; [ "$DEV" = cuda ] && size=1120x1680
  "$BUILD/bin/make_synth" --out "$out/img" --n 1 --size "$size" --seed 3 2>/dev/null
  img="$out/img/train_c/source/synth_00000.png"
  "$BUILD/bin/bench_gs" --device "$DEV" --threads "$THREADS" --image "$img" ${FIT_ITERS:+--fit-iters $FIT_ITERS} >>"$out/ours.jsonl"
fi
if "$PY" -c 'import torch' 2>/dev/null; then
  want engine && "$PY" "$here/bench_engine_torch.py" --device "$DEV" --threads "$THREADS" >>"$out/torch.jsonl"
  [ "$DEV" = cpu ] && want conv && "$PY" "$here/bench_conv_torch.py" --threads "$THREADS" >>"$out/torch.jsonl"
  want reduce && "$PY" "$here/bench_reduce_torch.py" --device "$DEV" --threads "$THREADS" >>"$out/torch.jsonl"
  # TORCH_FIT_ITERS: time fewer iterations of the (slow) PyTorch fit; the table scales it to FIT_ITERS.
  want gs && "$PY" "$here/bench_gs_torch.py" --device "$DEV" --threads "$THREADS" --image "$img" \
      --fit-iters "${TORCH_FIT_ITERS:-${FIT_ITERS:-600}}" >>"$out/torch.jsonl"
else
  echo "PyTorch not importable by $PY: refocus timings only" >&2
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
    # four decimals below 1 ms: GPU reductions take microseconds
    f = lambda v: f"{v:.2f}" if v >= 1 else f"{v:.4f}"
    print(f"{o['name']:48s} {o['device']:6s} {f(o['ms']):>11s} {f(t['ms']) if t else 'nan':>9s} {r:>6s}")
PYEOF
# Peak memory: each case in its own process, refocus then PyTorch (growth of the peak resident set).
if ! want memory; then rm -rf "$out"; exit 0; fi
: >"$out/mem_ours.jsonl"
: >"$out/mem_torch.jsonl"
for c in adds unet gs; do
  "$BUILD/bin/bench_memory" --case "$c" --device "$DEV" --threads "$THREADS" >>"$out/mem_ours.jsonl"
  if [ "$c" != gs ] && "$PY" -c 'import torch' 2>/dev/null; then  # gs has no PyTorch twin (bench/NOTES.md)
    "$PY" "$here/bench_memory_torch.py" --case "$c" --device "$DEV" --threads "$THREADS" >>"$out/mem_torch.jsonl"
  fi
done
"$PY" - "$out/mem_ours.jsonl" "$out/mem_torch.jsonl" <<'PYEOF'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1])]
theirs = {(j["name"], j["phase"]): j for j in (json.loads(l) for l in open(sys.argv[2]) if l.strip())}
print("\npeak memory, MiB over the start, each case in its own process: tensor bytes at the peak /")
print("alive at the end of the phase / peak resident-set growth (after malloc_trim)")
print(f"{'case':48s} {'phase':16s} {'refocus':>20s} {'torch':>20s}")
f = lambda j: f"{j['peak_mib']:.0f} / {j['alive_mib']:.0f} / {j['rss_growth_mib']:.0f}" if j else "-"
for o in ours:
    print(f"{o['name']:48s} {o['phase']:16s} {f(o):>20s} {f(theirs.get((o['name'], o['phase']))):>20s}")
PYEOF
rm -rf "$out"
