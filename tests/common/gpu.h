/* gpu.h: the GPU tests' prologue: open the GPU, or learn its architecture
 * (for tests that open sessions themselves); prints "SKIP: <reason>" and exits
 * 77, which ctest counts as skipped, when there is no GPU or driver. */
#ifndef RABIT_TEST_GPU_H
#define RABIT_TEST_GPU_H

#include <stdio.h>
#include <stdlib.h>

#include "runtime/cuda/gpu.h"

/* Open GPU 0 for the whole test (its architecture into arch), or skip. */
static inline RtGpu *gpu_open_or_skip(char arch[16]) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* a crash, even an abort, keeps every line before it in the log */
  RtGpu *gpu = NULL;
  RbBuf err = {0};
  if (rt_gpu_open(&gpu, 0, &err) != RB_OK) {
    printf("SKIP: %s", err.data ? err.data : "no GPU\n");
    rb_buf_free(&err);
    exit(77);
  }
  snprintf(arch, 16, "%s", rt_gpu_arch(gpu));
  rb_buf_free(&err);
  return gpu;
}

static inline void gpu_arch_or_skip(char arch[16]) { rt_gpu_close(gpu_open_or_skip(arch)); }

#endif
