#!/usr/bin/env bash
# Build the libFuzzer targets with clang (ASan + UBSan, CPU only) in build-fuzz/ and run each RUNS times
# (default 1,000,000) from seeds made here. Prints libFuzzer's final stats; exits non-zero on any finding.
# usage: scripts/fuzz.sh [RUNS] [TARGET...]      (targets: fuzz_image fuzz_safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
shift || true
TARGETS=${*:-fuzz_image fuzz_safetensors}
B=build-fuzz
cmake -S . -B "$B" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DREFOCUS_CUDA=OFF -DREFOCUS_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREFOCUS_MARCH= \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" >/dev/null
cmake --build "$B" -j"$(nproc)" --target $TARGETS >/dev/null

# Seeds: the project's own PNG/JPEG writers (the regular build's make_synth, when built), hand-made PNG/PNM/
# BMP headers, the crash inputs of ../shared/reliability when present, and a small valid safetensors file.
seeds="$B/seeds"
mkdir -p "$seeds/image" "$seeds/safetensors"
if [ -x build/bin/make_synth ]; then
  build/bin/make_synth --out "$seeds/synth" --n 1 --size 16x24 --seed 5 >/dev/null 2>&1 || true
  build/bin/make_synth --out "$seeds/synth_ded" --n 1 --size 16x16 --seed 6 --layout ded >/dev/null 2>&1 || true
  find "$seeds"/synth* -type f \( -name '*.png' -o -name '*.jpg' \) -exec cp {} "$seeds/image/" \; 2>/dev/null || true
fi
[ -d ../shared/reliability ] && cp ../shared/reliability/img_* "$seeds/image/" 2>/dev/null || true
/usr/bin/python3 - "$seeds" <<'PY'
import json, struct, sys, zlib
d = sys.argv[1]
def png(w, h, ctype, ch):
    raw = b''.join(b'\0' + bytes((x * 7 + y * 3) % 256 for x in range(w * ch)) for y in range(h))
    chunk = lambda t, b: struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, ctype, 0, 0, 0)) + \
        chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
open(f'{d}/image/gray.png', 'wb').write(png(5, 4, 0, 1))
open(f'{d}/image/rgba.png', 'wb').write(png(3, 6, 6, 4))
open(f'{d}/image/p6.ppm', 'wb').write(b'P6\n4 3\n255\n' + bytes(range(36)))
bmp_pixels = bytes(range(4 * 2 * 3))
open(f'{d}/image/x.bmp', 'wb').write(b'BM' + struct.pack('<IHHI', 54 + len(bmp_pixels), 0, 0, 54) +
    struct.pack('<IiiHHIIiiII', 40, 4, 2, 1, 24, 0, len(bmp_pixels), 0, 0, 0, 0) + bmp_pixels)
data = struct.pack('<6f', 1, 2, 3, 4, 5, 6) + struct.pack('<2d', 0.5, -1)
header = {'__metadata__': {'model': 'gs', 'step': '3', 'config': json.dumps({'heads': 4, 'dim': 64})},
          'a.weight': {'dtype': 'F32', 'shape': [2, 3], 'data_offsets': [0, 24]},
          'b': {'dtype': 'F64', 'shape': [2], 'data_offsets': [24, 40]}}
h = json.dumps(header).encode()
open(f'{d}/safetensors/small.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + data)
PY

status=0
for t in $TARGETS; do
  kind=${t#fuzz_}
  mkdir -p "$B/corpus_$kind"
  echo "== $t: $RUNS runs"
  REFOCUS_MAX_PIXELS=262144 "$B/bin/$t" -runs="$RUNS" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=1 \
    -print_final_stats=1 -artifact_prefix="$B/" "$B/corpus_$kind" "$seeds/$kind" 2>"$B/$t.log" || status=1
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|stat::slowest_unit_time_sec|ERROR|SUMMARY" "$B/$t.log" || true
done
exit $status
