#include <stdio.h>
#include <stdlib.h>

#include "codegen/codegen.h" // expect: layering
#include "ir/ir.h"

/* Comments may say printf("x"), exit(1) and fprintf(stderr, ...) freely. */
void ir_print(FILE *f, const char *s) {
  fprintf(f, "%s\n", s);          /* a FILE* the caller passed: fine */
  rb_buf_printf(0, "printf(%s)", s); /* not printf, and a string */
  if (!s) abort(); // expect: library-prints
}
