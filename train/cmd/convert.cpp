// convert: a state dict under the official code's names (scripts/pth_to_safetensors.py turns an official
// .pth into one) -> a refocus checkpoint whose config reproduces the official network, quirks included.
#include <cstdio>

#include "engine/safetensors.h"
#include "models/registry.h"
#include "train/cli.h"

using namespace rf;

static const char* kUsage =
    "usage: convert --model NAME --official IN.safetensors OUT.safetensors\n"
    "IN: the official state dict as safetensors (scripts/pth_to_safetensors.py). OUT: a refocus checkpoint\n"
    "that deblur, evaluate and forward load like any trained one.";

int main(int argc, char** argv) {
  return run_main("convert", [&] {
    Args a(argc, argv, kUsage);
    a.positional(1, "give OUT.safetensors");
    std::string name = a.required("--model"), in = a.required("--official");
    a.check_all_used();
    const ModelEntry& e = model_entry(name);
    RF_CHECK(e.from_official, name, " has no official code to convert from");
    SafeTensors st = load_safetensors(in);
    nlohmann::json config;
    try {
      config = e.from_official(st.tensors);
    } catch (const Error& err) {
      throw Error(cat(in, ": ", err.what()));
    }
    auto model = make_model(name, config);
    model->load_state_dict(st.tensors, true, in);
    save_model(a.positional()[0], *model);
    std::fprintf(stderr, "convert: %s, %lld parameters -> %s\n", model->description().c_str(),
                 (long long)model->num_parameters(), a.positional()[0].c_str());
    return 0;
  });
}
