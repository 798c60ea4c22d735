// libFuzzer target: the image reader (header checks, size limits, decoding) on arbitrary bytes. Any Error is a
// correct refusal; a crash, a sanitizer report, a timeout or an allocation over -rss_limit_mb is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  for (int channels : {3, 1}) {
    try {
      rf::Tensor t = rf::decode_image(bytes, "fuzz.png", channels);
      if (t.numel() == 0) __builtin_trap();  // a decoded image is never empty
    } catch (const rf::Error&) {
    }
  }
  return 0;
}
