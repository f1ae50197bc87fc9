#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h" // expect: include-cycle
