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
if "$PY" -c 'import torch' 2>/dev/null; then
  "$PY" "$here/bench_engine_torch.py" --device "$DEV" --threads "$THREADS" >"$out/torch.jsonl"
else
  echo "PyTorch not importable by $PY: refocus timings only" >&2
  : >"$out/torch.jsonl"
fi
"$PY" - "$out/ours.jsonl" "$out/torch.jsonl" <<'PYEOF'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1])]
theirs = {j["name"]: j for j in (json.loads(l) for l in open(sys.argv[2]) if l.strip())}
print(f"{'case':48s} {'device':6s} {'refocus ms':>11s} {'torch ms':>9s} {'ratio':>6s}")
for o in ours:
    t = theirs.get(o["name"])
    r = f"{o['ms'] / t['ms']:.2f}" if t else "-"
    print(f"{o['name']:48s} {o['device']:6s} {o['ms']:11.2f} {t['ms'] if t else float('nan'):9.2f} {r:>6s}")
PYEOF
rm -rf "$out"
