/* fuzz_frontend: libFuzzer target over the whole compiler short of NVRTC:
 * text -> graph -> fused graph -> kernels (cg_kernels_from_graph) -> CUDA
 * source and launch geometry of each kernel (cg_target_cuda). Beyond "never
 * crash", it checks on every input that compiles: the printed graph parses
 * back and prints identically, fusion yields a verified graph, and every
 * kernel selected for it is one the target emits (no GPU is needed).
 * Inputs over 64 KB are skipped: the limits tests cover size, the fuzzer
 * covers structure. Run it as the README says (a scratch corpus directory,
 * the dictionary fuzz_frontend.dict); CI replays tests/frontend/corpus,
 * errors/ and samples/ through the same entry point (fuzz_frontend_replay). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"

#define FUZZ_MAX_INPUT 65536

static char *print(const IrGraph *g) {
  RbBuf b = {0};
  ir_graph_print(g, &b);
  return b.data;
}

/* Select the fused graph's kernels for CUDA and emit each, with its geometry
 * and its name. A refusal (RB_EUSER: rabitc reports it at the op's line) is
 * an answer; an internal failure, or success without source, is a bug. */
static void codegen(const IrGraph *g, size_t size) {
  CgTargetOptions topt = {size % 2 ? 16 : 2048, 1, 0}; /* two KV-cache lengths; the fused norms too */
  CgKernelSet ks;
  memset(&ks, 0, sizeof ks);
  IrDiag d;
  ir_diag_init(&d, "fuzz", NULL);
  int rc0 = cg_kernels_from_graph(g, &cg_target_cuda, &topt, &d, &ks);
  ir_diag_free(&d);
  if (rc0 == RB_EUSER) { /* a size over the kernels' index limits: refused, an answer */
    cg_kernel_set_free(&ks);
    return;
  }
  if (rc0 != RB_OK) abort();
  for (int i = 0; i < ks.n; i++) {
    const CgKernel *k = &ks.k[i].kernel;
    RbBuf src = {0}, err = {0}, name = {0};
    char entry[CG_ENTRY_MAX];
    CgGeometry geo;
    cg_kernel_describe(k, &name);
    int rc = cg_target_cuda.emit(k, &src, entry, &err);
    if (rc == RB_OK) rc = cg_target_cuda.geometry(k, &geo, &err);
    if (rc == RB_EINTERNAL || (rc == RB_OK && (!src.data || !entry[0]))) abort();
    rb_buf_free(&src);
    rb_buf_free(&err);
    rb_buf_free(&name);
  }
  cg_kernel_set_free(&ks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > FUZZ_MAX_INPUT) return 0;
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
    codegen(g, size);
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
