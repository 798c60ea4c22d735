// LPIPS (Zhang et al. 2018), AlexNet variant: distances between deep features, channel-normalised and
// weighted by learned 1x1 heads. The weights cannot be downloaded here; give them as a safetensors file
// holding the lpips package's state dict (names net.slice1.0.weight ... lin4.model.1.weight), e.g.
//   python3 -c "import lpips, safetensors.torch as s; s.save_file(lpips.LPIPS(net='alex').state_dict(), 'lpips_alex.safetensors')"
#pragma once
#include <memory>
#include <string>

#include "layers/layers.h"

namespace rf {

class Lpips : public Module {
 public:
  Lpips();
  // a, b [N, 3, H, W] in [0, 1] -> distances [N].
  Tensor forward(const Tensor& a, const Tensor& b);
  std::shared_ptr<Conv2d> conv[5];
  std::shared_ptr<Conv2d> lin[5];  // 1x1, no bias

 private:
  std::vector<Tensor> features(const Tensor& x);
};

// Loads and checks the weights (the scaling_layer buffers, if present, are fixed constants and skipped).
std::unique_ptr<Lpips> load_lpips(const std::string& path, Device d);

}  // namespace rf
