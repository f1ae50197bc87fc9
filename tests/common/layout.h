/* layout.h: the kernel bit layout of codegen/cuda/linear.c's header, rebuilt from the signs
 * for the CPU models of the strategies that read it (test_bmma, test_xsmem), and the check
 * that the CUDA target refuses a kernel with a given message. */
#ifndef RABIT_TEST_LAYOUT_H
#define RABIT_TEST_LAYOUT_H

#include <stdint.h>
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"
#include "tests/common/check.h"

/* Sign bit (1: -1) of row n, column col of path p of signs b (paths, N, K), or 0 outside. */
static inline unsigned sign_bit(const uint8_t *b, int N, int K, int p, int n, int col) {
  return n < N && col < K ? b[((size_t)p * N + n) * K + col] : 0u;
}

/* The kernel layout's word j of lane (gid, tig), tile T, group c: bit r / r + 16 (r = 4 s + q)
 * is row 16 T + gid + 8 (q & 1), column 256 c + 64 j + 16 tig + 4 s + 2 (q >> 1) + {0, 1}. */
static inline unsigned layout_word(const uint8_t *b, int N, int K, int p, int T, int c, int lane, int j) {
  unsigned w = 0;
  for (int bit = 0; bit < 32; bit++) {
    int r = bit & 15, s = r >> 2, q = r & 3;
    int n = T * 16 + (lane >> 2) + 8 * (q & 1);
    int col = c * 256 + j * 64 + (lane & 3) * 16 + 4 * s + 2 * (q >> 1) + (bit >> 4);
    w |= sign_bit(b, N, K, p, n, col) << bit;
  }
  return w;
}

/* 0 when the CUDA target refuses k with a message containing want; else 1, with a FAIL. */
static inline int refused(CgKernel k, const char *want, const char *what) {
  RbBuf src = {0}, err = {0};
  char entry[CG_ENTRY_MAX];
  int rc = cg_target_cuda.emit(&k, &src, entry, &err);
  int ok = rc == RB_EUSER && err.data && strstr(err.data, want);
  CHECK(ok, "%s: rc %d, message '%s' (want '%s')", what, rc, err.data ? err.data : "", want);
  rb_buf_free(&src), rb_buf_free(&err);
  return !ok;
}

#endif
