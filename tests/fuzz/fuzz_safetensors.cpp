// libFuzzer target: the safetensors reader (header JSON, nesting limit, dtypes, shapes, offsets, element counts)
// and the checkpoint metadata parser on arbitrary bytes. An Error is a correct refusal; anything else is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/safetensors.h"
#include "layers/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    rf::SafeTensors st = rf::parse_safetensors(bytes, "fuzz.safetensors");
    for (auto& [name, t] : st.tensors)
      if (t.numel() * 2 > (int64_t)size) __builtin_trap();  // never more elements than the bytes could hold
    rf::parse_checkpoint_info("fuzz.safetensors", st.metadata);
  } catch (const rf::Error&) {
  }
  return 0;
}
