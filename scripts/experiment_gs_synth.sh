#!/usr/bin/env bash
# The gs experiment on synthetic data (issue 4): 200 training pairs and 50 held-out test pairs at 256x256,
# train_gs with and without depth, then evaluate against the identity baseline. CPU-sized defaults;
# everything lands in $EXP (default exp/gs_synth). Usage: scripts/experiment_gs_synth.sh [BUILD_DIR]
set -euo pipefail
BUILD=${1:-build}
EXP=${EXP:-exp/gs_synth}
FIT=${FIT_ITERS:-200}
ITERS=${ITERS:-3000}
INIT=${INIT_ITERS:-300}
bin="$BUILD/bin"
mkdir -p "$EXP"
[ -f "$EXP/synth/train_c/meta.json" ] || "$bin/make_synth" --out "$EXP/synth" --n 200 --size 256x256 --seed 11 --split train
[ -f "$EXP/synth/test_c/meta.json" ] || "$bin/make_synth" --out "$EXP/synth" --n 50 --size 256x256 --seed 12 --split test
"$bin/evaluate" --data "$EXP/synth" --split test --identity --out "$EXP/eval_identity"
for variant in depth nodepth; do
  flag=""; [ "$variant" = nodepth ] && flag="--no-depth"
  run="$EXP/run_$variant"
  resume=""; [ -f "$run/config.json" ] && resume="--resume"
  [ -f "$run/gs.safetensors" ] || "$bin/train_gs" "$EXP/synth" --out "$run" $flag $resume \
      --init-iters "$INIT" --fit-iters "$FIT" --iters "$ITERS" --crop 64 --batch 4
  "$bin/evaluate" --data "$EXP/synth" --split test --model gs --weights "$run/gs.safetensors" --out "$EXP/eval_$variant"
done
cat "$EXP"/eval_*/results.md
