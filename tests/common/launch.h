/* launch.h: the CUDA target's emitter and launch geometry, as the kernel
 * tests call them: a kernel and a run-time extent in, a launch out. */
#ifndef RABIT_TESTS_LAUNCH_H
#define RABIT_TESTS_LAUNCH_H

#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"
#include "runtime/cuda/gpu.h"
#include "runtime/jit/jit.h"

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

/* The attention workspace kernel k needs (cg_attention_ws_bytes; 0 for other kinds). */
static inline size_t test_attention_ws_bytes(const CgKernel *k) {
  CgGeometry g;
  RbBuf err = {0};
  int rc = cg_target_cuda.geometry(k, &g, &err);
  rb_buf_free(&err);
  return rc ? 0 : cg_attention_ws_bytes(&k->op, &g);
}

static inline int test_emit(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  return cg_target_cuda.emit(k, src, entry, err);
}

/* Emit k, compile it with NVRTC for arch and load it on gpu; its entry name into entry (may be
 * NULL). RB_OK, or the failing step's status with its message printed (and the source, when
 * the compiler refused it). */
static inline int test_build_load(RtGpu *gpu, const char *arch, const CgKernel *k, RtModule **mod, RtFunction *fn,
                                  char *entry_out) {
  RbBuf src = {0}, err = {0};
  char entry[CG_ENTRY_MAX];
  void *cubin = NULL;
  size_t len = 0;
  int rc = test_emit(k, &src, entry, &err);
  if (rc) printf("emit %s: %s\n", cg_kind_name(k->op.kind), err.data ? err.data : "?");
  if (!rc && (rc = rt_nvrtc_compile(src.data, entry, arch, rt_nvrtc_default_opts, rt_nvrtc_default_nopts, &cubin,
                                    &len, &err)))
    printf("NVRTC failed for %s:\n%s\n%s\n", entry, err.data ? err.data : "", src.data);
  if (!rc && ((rc = rt_module_load(gpu, cubin, len, mod)) || (rc = rt_module_function(*mod, entry, fn))))
    printf("loading %s failed: %s\n", entry, rt_gpu_error(gpu));
  if (entry_out) memcpy(entry_out, entry, CG_ENTRY_MAX);
  rb_free(cubin);
  rb_buf_free(&src);
  rb_buf_free(&err);
  return rc;
}

#endif
