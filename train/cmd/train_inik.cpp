// train_inik: train inik (INIKNet, paper 003) on a dataset folder; see train/recipe_inik.cpp.
#include "train/recipes.h"

int main(int argc, char** argv) { return rf::train_main(rf::inik_recipe(), argc, argv); }
