#include "ir/ir.h"

int fe_parse(const char *s) {
  if (!s) {
    printf("no input\n"); // expect: library-prints
    exit(1);              // expect: library-prints
  }
  return 0;
}
