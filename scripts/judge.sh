#!/usr/bin/env bash
# The judging protocol of DESIGN §8, the same for every network: train NAME with a recipe on the synthetic
# judging set, score it beside the blurry input on the synthetic test split and on the real Pixel 4 pairs
# (--align), count parameters, time inference at 1280x720, measure peak memory at 1680x1120, and write one
# row of the README's results table (results/NAME_RECIPE.json + .md; the README table is rebuilt from them).
#
# usage: scripts/judge.sh NAME cpu|gpu [BUILD]
#   env: JUDGE_DATA (default data/judge; made here when missing), PIXEL4 (default
#        ../shared/realdefocus/dual_pixel_defocus_estimation_deblurring; skipped when absent),
#        DEVICE (default: cpu for the cpu recipe, cuda for gpu), RUN (default runs/judge_NAME_RECIPE; the scores go
#        to RUN_eval, so a trial run never overwrites the judged run's),
#        TRAIN_ARGS (extra trainer flags, shown in the row), SKIP_TRAIN=1 (score an existing run),
#        REUSE_SCORES=1 (with SKIP_TRAIN: keep the scores already in the eval folder, compute only the missing ones),
#        ENSEMBLE=N (also score the synthetic and Pixel 4 sets with --self-ensemble N, beside the plain row).
set -euo pipefail
# Idle OpenMP threads spin briefly (see the Makefile), in case something else runs on these cores.
[ -n "${OMP_WAIT_POLICY:-}${GOMP_SPINCOUNT:-}" ] || export GOMP_SPINCOUNT=10000
NAME=${1:?usage: scripts/judge.sh NAME cpu|gpu [BUILD]}
RECIPE=${2:?usage: scripts/judge.sh NAME cpu|gpu [BUILD]}
BUILD=${3:-build}
bin="$BUILD/bin"
DATA=${JUDGE_DATA:-data/judge}
PIXEL4=${PIXEL4:-../shared/realdefocus/dual_pixel_defocus_estimation_deblurring}
DEVICE=${DEVICE:-$([ "$RECIPE" = gpu ] && echo cuda || echo cpu)}
ens=${ENSEMBLE:-1}
case "$ens" in 1|2|4|8) ;; *) echo "judge.sh: ENSEMBLE must be 1, 2, 4 or 8, got '$ens'" >&2; exit 1;; esac
RUN=${RUN:-runs/judge_${NAME}_${RECIPE}}
OUT=${RUN}_eval
mkdir -p "$OUT" results
trainer="train_$NAME"
case "$NAME" in gkm|ggkm+) trainer=train_ggkm; TRAIN_ARGS="--variant $NAME ${TRAIN_ARGS:-}";; esac

# The judging data (DESIGN §8): 400 training and 50 test pairs at 256x256; jdrl also gets misaligned pairs.
if [ ! -f "$DATA/train_c/meta.json" ]; then "$bin/make_synth" --out "$DATA" --n 400 --size 256x256 --seed 1; fi
if [ ! -f "$DATA/test_c/meta.json" ]; then "$bin/make_synth" --out "$DATA" --n 50 --size 256x256 --seed 2 --split test; fi
train_data="$DATA"
if [ "$NAME" = jdrl ]; then
  train_data="${DATA}_misaligned"
  if [ ! -f "$train_data/train_c/meta.json" ]; then
    "$bin/make_synth" --out "$train_data" --n 400 --size 256x256 --seed 1 --misalign
  fi
fi

if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  resume=""; [ -f "$RUN/config.json" ] && resume="--resume"
  [ -f "$RUN/$NAME.safetensors" ] || "$bin/$trainer" "$train_data" --out "$RUN" --recipe "$RECIPE" --device "$DEVICE" $resume ${TRAIN_ARGS:-}
fi
weights="$RUN/$NAME.safetensors"
[ -f "$weights" ] || weights=$(ls "$RUN"/*.safetensors | grep -v train_state | head -1)

scored() {  # out-dir: kept from an earlier scoring of the same weights (REUSE_SCORES=1 with SKIP_TRAIN=1)
  [ "${SKIP_TRAIN:-0}" = 1 ] && [ "${REUSE_SCORES:-0}" = 1 ] && [ -f "$1/summary.json" ]
}
score() {  # out-dir, evaluate args...
  local dir=$1; shift
  scored "$dir" && return 0
  "$bin/evaluate" --out "$dir" "$@" >/dev/null
}
score "$OUT/synth_identity" --data "$DATA" --identity
score "$OUT/synth_model" --data "$DATA" --model "$NAME" --weights "$weights" --device "$DEVICE"
if [ -d "$PIXEL4" ]; then
  score "$OUT/pixel4_identity" --data "$PIXEL4" --identity --align
  # The Pixel 4 pairs are linear light and dark (mean 0.02-0.09): the model sees them as it was trained, brightened and
  # sRGB-encoded (--linear); the score of the raw linear input is kept beside it (pixel4_model_raw).
  # A model that reads depth maps cannot score them (they have none): the row says so.
  scored "$OUT/pixel4_model" || rm -f "$OUT/pixel4_skipped"
  if ! scored "$OUT/pixel4_model" &&
     ! "$bin/evaluate" --out "$OUT/pixel4_model" --data "$PIXEL4" --model "$NAME" --weights "$weights" \
        --device "$DEVICE" --align --linear >/dev/null 2>"$OUT/pixel4_model.err"; then
    grep -q "needs a depth map" "$OUT/pixel4_model.err" || { cat "$OUT/pixel4_model.err" >&2; exit 1; }
    rm -f "$OUT/pixel4_model/summary.json"
    echo "the model reads depth maps; the Pixel 4 pairs have none" >"$OUT/pixel4_skipped"
  fi
  [ -f "$OUT/pixel4_skipped" ] ||
    score "$OUT/pixel4_model_raw" --data "$PIXEL4" --model "$NAME" --weights "$weights" --device "$DEVICE" --align
fi

# The self-ensemble (ENSEMBLE=N: each image run in N flips and quarter turns, averaged), scored beside the plain runs.
if [ "$ens" != 1 ]; then
  score "$OUT/synth_model_ensemble$ens" --data "$DATA" --model "$NAME" --weights "$weights" --device "$DEVICE" --self-ensemble "$ens"
  if [ -d "$PIXEL4" ] && [ ! -f "$OUT/pixel4_skipped" ]; then
    score "$OUT/pixel4_model_ensemble$ens" --data "$PIXEL4" --model "$NAME" --weights "$weights" --device "$DEVICE" \
        --align --linear --self-ensemble "$ens"
  fi
fi

# jdrl: the paper's point on our data — the same network trained naively on the same misaligned pairs, both scored
# plainly and against the ground truth warped onto each output (--warp-gt).
if [ "$NAME" = jdrl ]; then
  naive_run=${RUN}_naive
  if [ "${SKIP_TRAIN:-0}" != 1 ] && [ ! -f "$naive_run/jdrl.safetensors" ]; then
    resume=""; [ -f "$naive_run/config.json" ] && resume="--resume"
    "$bin/train_jdrl" "$train_data" --out "$naive_run" --recipe "$RECIPE" --device "$DEVICE" --naive $resume ${TRAIN_ARGS:-}
  fi
  score "$OUT/synth_naive" --data "$DATA" --model jdrl --weights "$naive_run/jdrl.safetensors" --device "$DEVICE"
  score "$OUT/synth_model_warp" --data "$DATA" --model jdrl --weights "$weights" --device "$DEVICE" --warp-gt
  score "$OUT/synth_naive_warp" --data "$DATA" --model jdrl --weights "$naive_run/jdrl.safetensors" --device "$DEVICE" --warp-gt
  score "$OUT/synth_identity_warp" --data "$DATA" --identity --warp-gt
fi

# sft (and gs with its defocus estimator) predict their own defocus map: score it against the synthetic GT maps (px)
# and the Pixel 4 maps (ranks).
if [ "$NAME" = sft ] || { [ "$NAME" = gs ] && grep -q '"defocus": *true' "$RUN/config.json"; }; then
  "$bin/deblur" --model "$NAME" --weights "$weights" --device "$DEVICE" --save-map "$OUT/synth_maps" \
      "$DATA/test_c/source" "$OUT/synth_out" 2>"$OUT/synth_maps.log"
  [ -d "$PIXEL4" ] && "$bin/deblur" --model "$NAME" --weights "$weights" --device "$DEVICE" --linear --save-map "$OUT/pixel4_maps" \
      "$PIXEL4/blur" "$OUT/pixel4_out" 2>"$OUT/pixel4_maps.log"
  /usr/bin/python3 scripts/map_agreement.py "${NAME}'s predicted defocus maps ($RECIPE recipe) against the ground truth:" \
      "$OUT/synth_maps" "$DATA/test_c/defocus" "$OUT/pixel4_maps" "$PIXEL4/defocus_map" "results/${NAME}_${RECIPE}_map.extra.md"
fi

# Inference time at 1280x720 and peak memory at 1680x1120 (one synthetic image each, timed by deblur). The time is
# the median of three runs: on a shared 2-core machine one ggkm run read 11.65 s, three more minutes later 7.39-8.07 s.
for size in 720x1280 1120x1680; do
  [ -f "$OUT/img_$size/train_c/source/synth_00000.png" ] || "$bin/make_synth" --out "$OUT/img_$size" --n 1 --size "$size" --seed 7 2>/dev/null
  maps=""; [ "$NAME" = gs ] && maps="--depth $OUT/img_$size/train_c/depth/synth_00000.png"
  runs=1; [ "$size" = 720x1280 ] && runs=3
  : >"$OUT/deblur_$size.log"
  for _ in $(seq "$runs"); do
    "$bin/deblur" --model "$NAME" --weights "$weights" --device "$DEVICE" $maps \
        "$OUT/img_$size/train_c/source/synth_00000.png" "$OUT/deblurred_$size.png" 2>>"$OUT/deblur_$size.log"
  done
done

/usr/bin/python3 - "$NAME" "$RECIPE" "$RUN" "$OUT" "$DEVICE" "${TRAIN_ARGS:-}" "$ens" <<'PYEOF'
import json, os, re, sys
name, recipe, run, out, device, train_args, ensemble = sys.argv[1:]
train_args = re.sub(r"--variant\s+\S+", "", train_args).strip()  # the variant is the row's name already
def summary(d):
    p = os.path.join(out, d, "summary.json")
    return json.load(open(p)) if os.path.exists(p) else None
cfg = json.load(open(os.path.join(run, "config.json")))
def deblur_log(size):
    t = open(os.path.join(out, f"deblur_{size}.log")).read()
    secs = sorted(float(x) for x in re.findall(r"model time ([0-9.]+) s", t))
    mem = re.search(r"peak tensor memory ([0-9.]+ [A-Za-z]+)", t)
    return (secs[len(secs) // 2] if secs else None), (mem.group(1) if mem else None)
t720, _ = deblur_log("720x1280")
_, m1680 = deblur_log("1120x1680")
si, sm, pi, pm, pr = (summary(d) for d in ("synth_identity", "synth_model", "pixel4_identity", "pixel4_model", "pixel4_model_raw"))
row = {
    "network": name, "recipe": recipe, "parameters": cfg.get("parameters"),
    "train_minutes": round(cfg.get("wall_seconds", 0) / 60, 1), "machine": cfg.get("machine"),
    "synth_identity_psnr": si["psnr"], "synth_psnr": sm["psnr"], "synth_identity_ssim": si["ssim"], "synth_ssim": sm["ssim"],
    "pixel4_identity_psnr": pi["psnr"] if pi else None, "pixel4_psnr": pm["psnr"] if pm else None,
    "pixel4_identity_ssim": pi["ssim"] if pi else None, "pixel4_ssim": pm["ssim"] if pm else None,
    "pixel4_linear_input": bool(pm and pm.get("linear_input")),
    "pixel4_raw_psnr": pr["psnr"] if pr else None, "pixel4_raw_ssim": pr["ssim"] if pr else None,
    "seconds_1280x720": t720, "peak_memory_1680x1120": m1680, "device": device, "train_args": train_args or None,
}
f = lambda v, p=2: "–" if v is None else f"{v:.{p}f}"
gain = sm["psnr"] - si["psnr"]
skipped = os.path.join(out, "pixel4_skipped")
row["pixel4_note"] = open(skipped).read().strip() if os.path.exists(skipped) else None
se, pe = summary(f"synth_model_ensemble{ensemble}"), summary(f"pixel4_model_ensemble{ensemble}")
if not pm:
    pe = None  # Pixel 4 not scored this time: an ensemble folder there is of an earlier run
if ensemble != "1" and se:
    row["self_ensemble"] = int(ensemble)
    row["synth_ensemble_psnr"], row["synth_ensemble_ssim"] = se["psnr"], se["ssim"]
    row["pixel4_ensemble_psnr"] = pe["psnr"] if pe else None
    p4 = (f", Pixel 4 (`--linear`) {pe['psnr']:.2f} ({pe['psnr'] - pi['psnr']:+.2f})" if pe and pi else "")
    open(f"results/{name}_{recipe}_ensemble.extra.md", "w").write(
        f"{name} ({recipe} recipe) with `--self-ensemble {ensemble}` (each image run in {ensemble} flips and quarter turns, "
        f"the results turned back and averaged; the table's {name} row is the plain run): synthetic {se['psnr']:.2f} dB "
        f"({se['psnr'] - si['psnr']:+.2f}) / SSIM {se['ssim']:.3f}{p4}.\n")
elif os.path.exists(f"results/{name}_{recipe}_ensemble.extra.md"):
    os.remove(f"results/{name}_{recipe}_ensemble.extra.md")  # not asked for this time
json.dump(row, open(f"results/{name}_{recipe}.json", "w"), indent=2)
pixel4 = (f"{f(row['pixel4_psnr'])} ({(row['pixel4_psnr'] or 0) - (row['pixel4_identity_psnr'] or 0):+.2f}) / {f(row['pixel4_ssim'], 3)}"
          if row["pixel4_psnr"] is not None else (row["pixel4_note"] or "–"))
if row["pixel4_psnr"] is not None and not row["pixel4_linear_input"]:
    pixel4 += " (raw input)"
if row["pixel4_raw_psnr"] is not None and row["pixel4_linear_input"]:
    pixel4 += f" [raw: {row['pixel4_raw_psnr'] - row['pixel4_identity_psnr']:+.2f}]"
md = (f"| {name}{f' ({train_args})' if train_args else ''} | {recipe} | {row['parameters']/1e6:.2f} M | {row['train_minutes']} min | "
      f"{f(sm['psnr'])} ({gain:+.2f}) / {f(sm['ssim'], 3)} | "
      f"{pixel4} | "
      f"{f(t720)} s ({device}) | {m1680 or '–'} |")
open(f"results/{name}_{recipe}.md", "w").write(md + "\n")
print(md)
if name == "jdrl":
    n, mw, nw, iw = (summary(d) for d in ("synth_naive", "synth_model_warp", "synth_naive_warp", "synth_identity_warp"))
    extra = ("| trained on misaligned pairs | plain ground truth: PSNR / SSIM | ground truth warped onto the output (--warp-gt) |\n"
             "|---|---|---|\n"
             f"| blurry input | {f(si['psnr'])} / {f(si['ssim'], 3)} | {f(iw['psnr'])} / {f(iw['ssim'], 3)} |\n"
             f"| jdrl, naive (Charbonnier to the misaligned GT) | {f(n['psnr'])} / {f(n['ssim'], 3)} | {f(nw['psnr'])} / {f(nw['ssim'], 3)} |\n"
             f"| jdrl (alignment + reblurring losses) | {f(sm['psnr'])} / {f(sm['ssim'], 3)} | {f(mw['psnr'])} / {f(mw['ssim'], 3)} |\n")
    open(f"results/{name}_{recipe}_naive.extra.md", "w").write(f"jdrl against the naive baseline ({recipe} recipe, synthetic test split):\n\n" + extra)
    print(extra)
PYEOF
scripts/results_table.sh
