/* test_nodriver.c: with no driver to load, rt_gpu_open is a user error that
 * says plainly what running needs, and the loader's reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/gpu.h"

int main(void) {
  /* ctest sets this too; setting it here keeps the test meaningful by hand. */
  setenv("RABIT_LIBCUDA", "/nonexistent", 1);
  RtGpu *g = (RtGpu *)1;
  RbBuf err = {0};
  int rc = rt_gpu_open(&g, 0, &err);
  int ok = rc == RB_EUSER && g == NULL && err.data &&
           strstr(err.data, "running kernels needs an NVIDIA GPU and driver") &&
           strstr(err.data, "/nonexistent");
  printf("rc %d, message: %s", rc, err.data ? err.data : "(none)\n");
  /* A second open reports the same reason (the loader runs once). */
  RbBuf err2 = {0};
  rc = rt_gpu_open(&g, 0, &err2);
  ok = ok && rc == RB_EUSER && err2.data && strcmp(err.data, err2.data) == 0;
  rb_buf_free(&err);
  rb_buf_free(&err2);
  if (!ok)
    fprintf(stderr, "FAIL\n");
  return ok ? 0 : 1;
}
