// forward: a network's forward pass (eval mode) on named input tensors, every output written — the way to
// check refocus against another implementation that holds the same weights (e.g. a PyTorch twin).
#include <cmath>
#include <cstdio>

#include "engine/json.h"
#include "engine/fileio.h"
#include "engine/autograd.h"
#include "engine/safetensors.h"
#include "models/registry.h"
#include "train/cli.h"

using namespace rf;

static const char* kUsage =
    "usage: forward --model NAME --weights W.safetensors [--config CONFIG.json] [--device auto|cpu|cuda]\n"
    "               IN.safetensors OUT.safetensors\n"
    "IN holds the forward's inputs under the official argument names (see README, 'forward'); OUT receives\n"
    "out0, out1, ... in the official return order. W is a refocus checkpoint, or a plain state dict under\n"
    "refocus's names (e.g. written by a PyTorch twin) whose configuration --config gives ({} = defaults).";

int main(int argc, char** argv) {
  return run_main("forward", [&] {
    Args a(argc, argv, kUsage);
    a.positional(2, "give IN.safetensors and OUT.safetensors");
    std::string name = a.required("--model"), weights = a.required("--weights"), config = a.str("--config", "");
    Device dev = select_device(a.str("--device", "auto"));
    a.check_all_used();
    nlohmann::json cfg = nlohmann::json::object();
    if (!config.empty()) {
      cfg = parse_json(read_file(config), config);
    }
    auto model = load_model(weights, name, dev, cfg);
    SafeTensors in = load_safetensors(a.positional()[0]);
    std::map<std::string, Tensor> inputs;
    for (const std::string& arg : model->forward_inputs()) {
      auto it = in.tensors.find(arg);
      RF_CHECK(it != in.tensors.end(), a.positional()[0], ": no input named '", arg, "' (", name, "'s forward takes ",
               [&] {
                 std::string s;
                 for (auto& n : model->forward_inputs()) s += (s.empty() ? "" : ", ") + n;
                 return s;
               }(),
               ")");
      for (float v : it->second.to_vector())
        RF_CHECK(std::isfinite(v), a.positional()[0], ": input '", arg, "' holds a non-finite value (", v, ")");
      inputs[arg] = it->second.to(dev);
    }
    RF_CHECK(inputs.size() == in.tensors.size(), a.positional()[0], ": holds tensors ", name, "'s forward does not take");
    NamedTensors out;
    {
      NoGrad ng;
      out = model->forward_named(inputs);
    }
    save_safetensors(a.positional()[1], out, {{"model", name}, {"weights", weights}});
    for (auto& [n, t] : out) std::fprintf(stderr, "forward: %s %s\n", n.c_str(), describe(t).c_str());
    return 0;
  });
}
