// Fuzz builds only (-DREFOCUS_FUZZ=ON): stb's readers and writers compiled here, with the fuzzer's coverage
// instrumentation and the sanitizers, in place of Debian's prebuilt libstb.so — so libFuzzer sees the branches
// inside the decoders it is feeding. The sources are Debian's libstb-dev headers; nothing is copied.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_write.h>
