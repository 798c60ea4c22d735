// Normalisation: layer norm over one dimension, batch norm over all but the channel dimension.
#pragma once
#include "engine/tensor.h"

namespace rf {

// Normalise over dimension `dim` (dim=1 on [N, C, H, W] is the per-pixel channel LayerNorm of
// Restormer-style networks; dim=-1 on [tokens, D] is the Transformer one), then weight * x + bias,
// both of shape [size(dim)] (either may be undefined).
Tensor layer_norm(const Tensor& x, int64_t dim, const Tensor& weight, const Tensor& bias, float eps = 1e-5f);

// x [N, C, ...]. Training: normalise with the batch statistics (biased variance) and update the
// running ones in place: running = (1 - momentum) * running + momentum * batch (unbiased variance).
// Evaluation: normalise with the running statistics.
Tensor batch_norm(const Tensor& x, Tensor& running_mean, Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, float momentum = 0.1f, float eps = 1e-5f);

}  // namespace rf
