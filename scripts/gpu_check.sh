#!/usr/bin/env bash
# For a session with a GPU (run it on the device machine from the repository root): build with CUDA for
# the local GPU, run the whole suite (the CUDA parity checks run there instead of skipping), then time the
# engine and the gs kernels against PyTorch on the GPU. Logs go to $OUT (or ./gpu_check).
set -uo pipefail
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
nvidia-smi -L | tee "$OUT/gpu.txt"
# cuDNN may come from PyTorch's wheel rather than the toolkit.
CUDNN=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null || true)
extra=""
if [ -n "$CUDNN" ] && [ ! -f /usr/local/cuda/include/cudnn.h ]; then
  extra="-DCUDNN_ROOT=$CUDNN"
  export LD_LIBRARY_PATH="$CUDNN/lib:${LD_LIBRARY_PATH:-}"
fi
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DREFOCUS_CUDA_ARCHS=native $extra >"$OUT/configure.log" 2>&1
cmake --build build-gpu -j "$(nproc)" >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
./build-gpu/bin/refocus_tests --no-intro >"$OUT/tests.log" 2>&1
tail -4 "$OUT/tests.log"
grep -E "ERROR|FAILED" "$OUT/tests.log" | head -40
PYTHON=python3 FIT_ITERS=600 TORCH_FIT_ITERS=20 bench/run_all.sh build-gpu cuda 2>&1 | tee "$OUT/bench.txt"
