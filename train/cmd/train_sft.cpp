// train_sft: train sft (paper 002) on a dataset with defocus maps; see train/recipe_sft.cpp.
#include "train/recipes.h"

int main(int argc, char** argv) { return rf::train_main(rf::sft_recipe(), argc, argv); }
