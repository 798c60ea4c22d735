// A recipe per network (train/recipe_<name>.cpp): its stages, losses' schedule, flags and the two judging
// recipes' defaults. The programs train/cmd/train_<name>.cpp are one line: train_main(<name>_recipe(), ...).
#pragma once
#include "train/trainer.h"

namespace rf {

Recipe gs_recipe();
Recipe ggkm_recipe();
Recipe sft_recipe();
Recipe inik_recipe();
Recipe jdrl_recipe();

}  // namespace rf
