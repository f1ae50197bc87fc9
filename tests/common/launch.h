/* launch.h: the CUDA target's emitter and launch geometry, as the kernel
 * tests call them: a kernel and a run-time extent in, a launch out. */
#ifndef RABIT_TESTS_LAUNCH_H
#define RABIT_TESTS_LAUNCH_H

#include "codegen/codegen.h"

/* The launch of kernel k for extent n; an all-zero grid when the target refuses k. */
static inline CgLaunch test_launch(const CgKernel *k, int n) {
  CgGeometry g;
  RbBuf err = {0};
  int rc = cg_target_cuda.geometry(k, &g, &err);
  rb_buf_free(&err);
  if (rc) {
    CgLaunch none = {{0, 0, 0}, {0, 0, 0}, 0};
    return none;
  }
  return cg_geometry_launch(&g, n);
}

static inline int test_emit(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  return cg_target_cuda.emit(k, src, entry, err);
}

#endif
