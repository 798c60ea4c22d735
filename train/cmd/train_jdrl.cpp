// train_jdrl: train jdrl (paper 004) on misaligned pairs; see train/recipe_jdrl.cpp.
#include "train/recipes.h"

int main(int argc, char** argv) { return rf::train_main(rf::jdrl_recipe(), argc, argv); }
