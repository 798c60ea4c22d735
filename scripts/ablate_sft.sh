#!/usr/bin/env bash
# The paper-002 ablations on our data (issue 11), beside the judged sft row: the same recipe trained end to end
# (one stage on the predicted map, --end-to-end), with the map concatenated to the features instead of the
# SFT-Dec conditioning (--modulation concat, three stages), and without the third stage (the first two only, the
# second taking the third's steps: the map loss holds all along), each scored on the synthetic test split of the
# judging set. The three-stage SFT-Dec arm is the judged run itself (results/sft_RECIPE.json, scripts/judge.sh sft RECIPE).
# Writes results/sft_RECIPE_ablation.extra.md (shown under the README's results table).
#
# usage: scripts/ablate_sft.sh cpu|gpu [BUILD]
#   env: JUDGE_DATA (default data/judge), RUN_PREFIX (default runs/ablate_sft_RECIPE: arms in PREFIX_end_to_end,
#        PREFIX_concat and PREFIX_no_finetune), DEVICE (cpu for the cpu recipe, cuda for gpu), SIDE_BY_SIDE=1 (train the arms at once,
#        one thread each).
set -euo pipefail
[ -n "${OMP_WAIT_POLICY:-}${GOMP_SPINCOUNT:-}" ] || export GOMP_SPINCOUNT=10000  # see the Makefile
RECIPE=${1:?usage: scripts/ablate_sft.sh cpu|gpu [BUILD]}
BUILD=${2:-build}
bin="$BUILD/bin"
DATA=${JUDGE_DATA:-data/judge}
PREFIX=${RUN_PREFIX:-runs/ablate_sft_$RECIPE}
DEVICE=${DEVICE:-$([ "$RECIPE" = gpu ] && echo cuda || echo cpu)}
[ -f "results/sft_$RECIPE.json" ] || { echo "ablate_sft: results/sft_$RECIPE.json is missing: judge sft first (scripts/judge.sh sft $RECIPE)" >&2; exit 1; }
[ -f "$DATA/train_c/meta.json" ] && [ -f "$DATA/test_c/meta.json" ] || { echo "ablate_sft: no judging set in $DATA (scripts/judge.sh makes it)" >&2; exit 1; }

steps=$("$bin/train_sft" --help | grep -o "$RECIPE = [0-9]* steps" | grep -o "[0-9]*") || true
[ -n "$steps" ] || { echo "ablate_sft: cannot read the $RECIPE recipe's steps from $bin/train_sft --help" >&2; exit 1; }
arm_args() {
  case $1 in
    end_to_end) echo "--end-to-end";;
    concat) echo "--modulation concat";;
    no_finetune) echo "--gt-map-iters $((steps * 40 / 100)) --pred-map-iters $((steps - steps * 40 / 100)) --finetune-iters 0";;
  esac
}
ARMS="end_to_end concat no_finetune"
train_arm() {  # arm: trains (resuming where a run stopped) unless the weights exist
  local run=${PREFIX}_$1 resume=""
  [ -f "$run/sft.safetensors" ] && return 0
  [ -f "$run/config.json" ] && resume="--resume"
  "$bin/train_sft" "$DATA" --out "$run" --recipe "$RECIPE" --device "$DEVICE" $(arm_args "$1") $resume >>"$run.log" 2>&1 ||
    { echo "ablate_sft: training the $1 arm failed, see $run.log" >&2; return 1; }
}
if [ "${SIDE_BY_SIDE:-0}" = 1 ]; then
  pids=""
  for arm in $ARMS; do OMP_NUM_THREADS=1 train_arm $arm & pids="$pids $!"; done
  for p in $pids; do wait $p; done
else
  for arm in $ARMS; do train_arm $arm; done
fi
for arm in $ARMS; do
  [ -f "${PREFIX}_${arm}_eval/summary.json" ] ||
    "$bin/evaluate" --out "${PREFIX}_${arm}_eval" --data "$DATA" --model sft --weights "${PREFIX}_$arm/sft.safetensors" \
        --device "$DEVICE" >/dev/null
done

/usr/bin/python3 - "$RECIPE" "$PREFIX" <<'PYEOF'
import json, sys
recipe, prefix = sys.argv[1:]
judged = json.load(open(f"results/sft_{recipe}.json"))
base = judged["synth_identity_psnr"]
def arm(name):
    cfg = json.load(open(f"{prefix}_{name}/config.json"))
    s = json.load(open(f"{prefix}_{name}_eval/summary.json"))
    return s["psnr"], s["ssim"], cfg.get("parameters")
# No training times: the arms may run side by side (SIDE_BY_SIDE=1), unlike the judged run.
rows = [("three stages (Eq. 7-8), SFT-Dec: the judged row", judged["synth_psnr"], judged["synth_ssim"], judged["parameters"])]
rows += [("one stage end to end on the predicted map, SFT-Dec", *arm("end_to_end")),
         ("three stages, map concatenated to the features (no SFT)", *arm("concat")),
         ("the first two stages only (no fine-tuning with L_wd), SFT-Dec", *arm("no_finetune"))]
md = (f"sft's ablations ({recipe} recipe, same steps, synthetic test split; blurry input {base:.2f} dB):\n\n"
      "| training | parameters | PSNR (gain) / SSIM |\n|---|---|---|\n" +
      "".join(f"| {n} | {p / 1e6:.2f} M | {ps:.2f} ({ps - base:+.2f}) / {ss:.3f} |\n" for n, ps, ss, p in rows))
open(f"results/sft_{recipe}_ablation.extra.md", "w").write(md)
print(md)
PYEOF
scripts/results_table.sh >/dev/null
