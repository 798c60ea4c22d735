// train_ggkm: train gkm, ggkm or ggkm+ (paper 001; --variant) on a dataset folder; see train/recipe_ggkm.cpp.
#include "train/recipes.h"

int main(int argc, char** argv) { return rf::train_main(rf::ggkm_recipe(), argc, argv); }
