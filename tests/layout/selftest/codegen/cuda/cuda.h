#include "codegen/codegen.h" // expect: include-cycle
