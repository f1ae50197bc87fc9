/* missing.c: the host target of a build without LLVM 16 (RABIT_LLVM=OFF, or
 * no llvm-16-dev at configure time): it exists, so nothing above codegen
 * needs to know, and refuses every kernel saying why. */
#include <string.h>

#include "codegen/codegen.h"

#define MISSING "the host target needs LLVM 16, which this build lacks (install llvm-16-dev and reconfigure with -DRABIT_LLVM=ON)"

int cg_host_available(RbBuf *err) {
  rb_buf_puts(err, MISSING);
  return RB_EUSER;
}

static int missing_emit(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  (void)k, (void)src;
  entry[0] = 0;
  return cg_host_available(err);
}

static int missing_geometry(const CgKernel *k, CgGeometry *g, RbBuf *err) {
  (void)k;
  memset(g, 0, sizeof *g);
  return cg_host_available(err);
}

static uint64_t missing_layout_bytes(const CgOp *op) {
  (void)op;
  return 0;
}

/* Selection still works (rabitc --list-kernels --target host): one bucket. */
static int missing_buckets(const CgOp *op, CgSchedule out[CG_MAX_BUCKETS]) {
  (void)op;
  memset(&out[0], 0, sizeof out[0]);
  out[0].strategy = CG_STRAT_XOR;
  out[0].batch_max = 16;
  return 1;
}

const CgTarget cg_target_host = {
    .name = "host",
    .compiler = "llvm",
    .emit = missing_emit,
    .geometry = missing_geometry,
    .layout_bytes = missing_layout_bytes,
    .linear_buckets = missing_buckets,
};
