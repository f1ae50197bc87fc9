#include "codegen/codegen.h" /* the same edge again: reported once, at cuda.h */
#include "codegen/cuda/cuda.h"

static const char *src = "  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;\n";
static int quote(char c) { return c == '"' || c == '\\'; } /* a '"' does not open a string */
static const char *sfx = ".h"; // expect: packed-format
