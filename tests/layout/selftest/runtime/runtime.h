#include "codegen/codegen.h"
typedef struct { char op[16]; int kernel[4]; } RtStep;
