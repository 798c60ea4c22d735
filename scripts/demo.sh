#!/usr/bin/env bash
# The embedded default job, small enough for a laptop CPU (a few minutes): a synthetic defocus dataset,
# the blurry-input baseline, a short gs training run, evaluation, and one deblurred image.
# DEVICE=cuda uses a GPU; DEMO_DIR moves the output (default ./demo). Re-running reuses what exists.
set -euo pipefail
BUILD=${1:-build}
DEMO=${DEMO_DIR:-demo}
DEVICE=${DEVICE:-auto}
bin="$BUILD/bin"
mkdir -p "$DEMO"
# --max-coc 40,80: blur radii of 3-6 px at 128x128, as in a crop of a strongly defocused photo (the default
# scales the blur with the image's width: at 128 px it would be at most 2.3 px, nearly sharp, nothing to undo).
echo "== 1/5 synthetic dataset: 32 training and 8 test pairs at 128x128 ($DEMO/synth)"
[ -f "$DEMO/synth/train_c/meta.json" ] || "$bin/make_synth" --out "$DEMO/synth" --n 32 --size 128x128 --seed 1 --split train --max-coc 40,80
[ -f "$DEMO/synth/test_c/meta.json" ] || "$bin/make_synth" --out "$DEMO/synth" --n 8 --size 128x128 --seed 2 --split test --max-coc 40,80
echo "== 2/5 baseline: the blurry input scored against the sharp target"
"$bin/evaluate" --data "$DEMO/synth" --split test --identity --out "$DEMO/eval_identity"
echo "== 3/5 train gs (paper 000): initializer, blob fits, blob deblurrer (a short run; see README for full runs)"
resume=""; [ -f "$DEMO/run_gs/config.json" ] && resume="--resume"
[ -f "$DEMO/run_gs/gs.safetensors" ] || "$bin/train_gs" "$DEMO/synth" --out "$DEMO/run_gs" --device "$DEVICE" $resume \
    --init-iters 60 --fit-iters 150 --iters 1500 --crop 64 --batch 2
echo "== 4/5 evaluate gs on the test pairs"
"$bin/evaluate" --data "$DEMO/synth" --split test --model gs --weights "$DEMO/run_gs/gs.safetensors" \
    --device "$DEVICE" --out "$DEMO/eval_gs"
echo "== 5/5 deblur one test image -> $DEMO/deblurred.png"
"$bin/deblur" --model gs --weights "$DEMO/run_gs/gs.safetensors" --device "$DEVICE" \
    --depth "$DEMO/synth/test_c/depth/synth_00000.png" "$DEMO/synth/test_c/source/synth_00000.png" "$DEMO/deblurred.png"
echo
echo "Done. Training report: $DEMO/run_gs/report.html; scores: $DEMO/eval_identity/results.md, $DEMO/eval_gs/results.md"
