#include <stdio.h>
#include <string.h>

#include "runtime/rabit.h" // expect: public-header
#include "runtime/runtime.h"

int exec_step(const RtStep *ps, const char *op, const char *key, const char *name, FILE *out, int K) {
  char buf[64];
  if (!strcmp(ps->op, "embed")) return 1; // expect: op-strcmp
  if (!strncmp(ps->op, // expect: op-strcmp
               "linear", 6))
    return 2;
  if (strcmp(op, "fancy") == 0) return 3; // expect: op-strcmp
  if (strcmp(key, "model") == 0) return 4;   /* not an op */
  if (strcmp(name, "embed") == 0) return 5;  /* a weight called "embed", not the op */
  int W = (K + 31) / 32; // expect: packed-format
  snprintf(buf, sizeof buf, "%s.bits", name); // expect: packed-format
  fprintf(out, "words %d\n", W);             /* the caller's FILE*: fine */
  return 0;
}
