// train_gs: train gs (paper 000) on a dataset folder; see train/recipe_gs.cpp for its stages.
#include "train/recipes.h"

int main(int argc, char** argv) { return rf::train_main(rf::gs_recipe(), argc, argv); }
