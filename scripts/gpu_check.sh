#!/usr/bin/env bash
# For a session with a GPU: run it on the device machine from the repository root. Builds with CUDA for the local
# GPU, runs the whole suite there (its CUDA parity checks run instead of skipping), runs the CUDA parity checks of
# the custom ops under compute-sanitizer, then (BENCH=1) times the engine and the gs kernels against PyTorch.
# Logs go to $OUT (or ./gpu_check).
#
# The device machine lacks Debian's stb, nlohmann-json and doctest: `make debs` downloads them into .debs/ here;
# carry .debs with the call and this script unpacks them into /tmp/deb. The build goes to /tmp (BUILD), since
# carried folders are replaced on every call.
#   REFOCUS_SYNC_DEBUG=1 (default here): the device is synchronised after every kernel, so a fault names the op
#   that caused it, with its shapes. SANITIZE=0 skips compute-sanitizer; BENCH=1 adds the benchmarks.
set -uo pipefail
OUT=${OUT:-gpu_check}
BUILD=${BUILD:-/tmp/build-gpu}
ARCHS=${ARCHS:-native}
mkdir -p "$OUT"
nvidia-smi -L | tee "$OUT/gpu.txt"
extra=""
if compgen -G ".debs/*.deb" >/dev/null; then
  mkdir -p /tmp/deb
  for d in .debs/*.deb; do dpkg -x "$d" /tmp/deb || { echo "gpu_check: cannot unpack $d" >&2; exit 1; }; done
  extra="-DCMAKE_PREFIX_PATH=/tmp/deb/usr"
  export LD_LIBRARY_PATH="/tmp/deb/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
# cuDNN may come from PyTorch's wheel rather than the toolkit.
CUDNN=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null || true)
if [ -n "$CUDNN" ] && [ ! -f /usr/local/cuda/include/cudnn.h ] && [ ! -f /usr/include/cudnn.h ]; then
  extra="$extra -DCUDNN_ROOT=$CUDNN"
  export LD_LIBRARY_PATH="$CUDNN/lib:${LD_LIBRARY_PATH:-}"
fi
start=$(date +%s)
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DREFOCUS_CUDA_ARCHS="$ARCHS" $extra >"$OUT/configure.log" 2>&1 ||
  { tail -30 "$OUT/configure.log"; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" >"$OUT/build.log" 2>&1 || { grep -B2 -A8 -m5 "error" "$OUT/build.log"; exit 1; }
echo "gpu_check: built in $(($(date +%s) - start)) s"
export REFOCUS_SYNC_DEBUG=${REFOCUS_SYNC_DEBUG:-1}
start=$(date +%s)
"$BUILD/bin/refocus_tests" --no-intro >"$OUT/tests.log" 2>&1
rc=$?
echo "gpu_check: suite exit $rc in $(($(date +%s) - start)) s"
tail -4 "$OUT/tests.log"
grep -E "CUDA parity" "$OUT/tests.log" | tail -2
grep -E -B3 -A12 "ERROR|FAILED" "$OUT/tests.log" | head -120
sanitizer=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
if [ "${SANITIZE:-1}" = 1 ] && [ ! -x "$sanitizer" ]; then
  echo "gpu_check: compute-sanitizer not found, skipped"
elif [ "${SANITIZE:-1}" = 1 ]; then
  # The ops written since the last GPU run, their parity checks only (memcheck makes every kernel ~10-100x slower).
  cases='kernel bank: separable*,fused inverse filtering*,fused isotropic reblurring*,op table: pooling*,resampling'
  start=$(date +%s)
  timeout 240 "$sanitizer" --tool memcheck --target-processes all --error-exitcode 9 \
    "$BUILD/bin/refocus_tests" --no-intro -tc="$cases" >"$OUT/memcheck.log" 2>&1
  mrc=$?
  echo "gpu_check: compute-sanitizer exit $mrc in $(($(date +%s) - start)) s (124: timed out)"
  [ "$mrc" = 0 ] || [ "$rc" != 0 ] || rc=$mrc
  grep -E "ERROR SUMMARY|Invalid|out of bounds|uninitialized" "$OUT/memcheck.log" | sort | uniq -c | head -20
fi
if [ "${BENCH:-0}" = 1 ]; then
  PYTHON=python3 FIT_ITERS=600 TORCH_FIT_ITERS=20 bench/run_all.sh "$BUILD" cuda 2>&1 | tee "$OUT/bench.txt"
fi
exit "$rc"
