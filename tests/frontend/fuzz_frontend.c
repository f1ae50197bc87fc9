/* fuzz_frontend: libFuzzer target over the whole frontend. Beyond "never
 * crash", it checks two properties on every input that compiles: the printed
 * graph parses back and prints identically, and fusion yields a verified graph. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"

static char *print(const IrGraph *g) {
  RbBuf b = {0};
  ir_graph_print(g, &b);
  return b.data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *src = malloc(size + 1);
  if (!src) return 0;
  memcpy(src, data, size);
  src[size] = 0;
  IrDiag d;
  ir_diag_init(&d, "fuzz.ir", src);
  IrGraph *g = NULL;
  FeOptions opt = {size % 5, size % 7 == 0}; /* exercise --paths 0..4 and dense */
  if (fe_compile("fuzz.ir", src, &opt, &d, &g) == RB_OK && ir_graph_verify(g, &d) == RB_OK) {
    char *p1 = print(g);
    IrDiag d2;
    ir_diag_init(&d2, "printed.ir", p1);
    IrGraph *g2 = NULL;
    if (fe_compile("printed.ir", p1, NULL, &d2, &g2) != RB_OK || ir_graph_verify(g2, &d2) != RB_OK)
      abort(); /* the printer wrote IR the parser rejects */
    char *p2 = print(g2);
    if (strcmp(p1, p2) != 0) abort(); /* not a round trip */
    ir_fuse(g);
    if (ir_graph_verify(g, &d2) != RB_OK) abort(); /* fusion broke an invariant */
    free(p1);
    free(p2);
    ir_graph_free(g2);
    ir_diag_free(&d2);
  }
  ir_graph_free(g);
  ir_diag_free(&d);
  free(src);
  return 0;
}
