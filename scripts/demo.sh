#!/usr/bin/env bash
# The embedded default job: a small synthetic defocus dataset, the blurry-input baseline, and (as the
# networks land) training and deblurring on it. CPU is enough; set DEVICE=cuda to use a GPU.
set -euo pipefail
BUILD=${1:-build}
DEMO=${DEMO_DIR:-demo}
DEVICE=${DEVICE:-auto}
bin="$BUILD/bin"
mkdir -p "$DEMO"
echo "== 1. synthetic dataset: 200 training pairs and 50 test pairs at 256x256 ($DEMO/synth)"
[ -f "$DEMO/synth/train_c/meta.json" ] || "$bin/make_synth" --out "$DEMO/synth" --n 200 --size 256x256 --seed 1 --split train
[ -f "$DEMO/synth/test_c/meta.json" ] || "$bin/make_synth" --out "$DEMO/synth" --n 50 --size 256x256 --seed 2 --split test
echo "== 2. baseline: the blurry input scored against the sharp target"
"$bin/evaluate" --data "$DEMO/synth" --split test --identity --out "$DEMO/eval_identity"
