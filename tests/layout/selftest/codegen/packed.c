#include "codegen/codegen.h"

/* The owner of the packed format may compute and spell it. */
static const char *const suffixes[] = {".bits", ".g", ".h"};
int cg_packed_words(int K) { return (K + 31) / 32; }
