#include <stdio.h>
#include <string.h>

#include "runtime/rabit.h" /* tools may use the public API */
#include "tools/load.h"

static const char *usage = "quantize: each linear <name>.weight becomes <name>.bits (I32 [k, N, ceil(K/32)])\n";

int main(int argc, char **argv) {
  char name[64] = "w";
  printf("%s", usage); /* tools print */
  strcpy(name + 1, ".g"); // expect: packed-format
  return 0;
}
