// Everything a network needs from the op layer, in one include.
#pragma once
#include "engine/autograd.h"
#include "engine/tensor.h"
#include "ops/conv.h"
#include "ops/elementwise.h"
#include "ops/fft.h"
#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/pool.h"
#include "ops/reduce.h"
#include "ops/sample.h"
#include "ops/shape.h"
