/* test_gradcheck_peer.c: ref_qlinear_forward/backward against the PyTorch peer's float64
 * gradcheck of one quantized linear (/work/shared/peers/rabit_qat_peer.py --gradcheck OUT):
 * y, dW, dg, dh to relative 1e-9. Usage: test_gradcheck_peer OUT.safetensors (SKIP without). */
#include <stdlib.h>
#include <string.h>

#include "runtime/formats/formats.h"
#include "tests/common/check.h"
#include "tests/ref/ref.h"
#include "tests/ref/ref_train.h"

/* A float64 tensor of the given rank as a fresh copy (the mapping need not be 8-aligned);
 * dims (rank) receive its shape. NULL (with a failed check) when absent or of another type. */
static double *get(const RtSafetensors *st, const char *name, int rank, int64_t *dims) {
  const RtTensor *t = rt_st_find(st, name);
  CHECK(t != NULL, "tensor '%s' is missing", name);
  if (!t) return NULL;
  CHECK(t->dtype == RT_F64 && t->rank == rank, "tensor '%s': %s rank %d, want F64 rank %d", name,
        rt_dtype_name(t->dtype), t->rank, rank);
  if (t->dtype != RT_F64 || t->rank != rank) return NULL;
  for (int i = 0; i < rank; i++) dims[i] = t->shape[i];
  double *p = malloc(t->nbytes ? t->nbytes : 1);
  memcpy(p, t->data, t->nbytes);
  return p;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    printf("SKIP: no gradcheck file given (rabit_qat_peer.py --gradcheck OUT.safetensors writes one)\n");
    return 77;
  }
  RtSafetensors *st = NULL;
  RbBuf err = {0};
  if (rt_st_open(argv[1], &st, &err) != RB_OK) {
    printf("SKIP: %s\n", err.data ? err.data : argv[1]);
    rb_buf_free(&err);
    return 77;
  }
  int64_t sW[2], sg[2], sh[2], sx[2], sdy[2], sy[2], s3[2];
  double *W = get(st, "W", 2, sW), *g = get(st, "g", 2, sg), *h = get(st, "h", 2, sh), *x = get(st, "x", 2, sx);
  double *dy = get(st, "dy", 2, sdy), *y = get(st, "y", 2, sy), *dW = get(st, "dW", 2, s3);
  double *dg = get(st, "dg", 2, s3), *dh = get(st, "dh", 2, s3);
  if (W && g && h && x && dy && y && dW && dg && dh) {
    int N = (int)sW[0], K = (int)sW[1], k = (int)sg[0], T = (int)sx[0];
    CHECK(sg[1] == N && sh[0] == k && sh[1] == K && sx[1] == K && sdy[0] == T && sdy[1] == N && sy[0] == T &&
              sy[1] == N && k >= 1 && k <= 4,
          "inconsistent shapes");
    size_t nk = (size_t)N * K;
    double *my = malloc((size_t)T * N * 8), *what = malloc(nk * 8), *mdW = malloc(nk * 8);
    double *mdg = malloc((size_t)k * N * 8), *mdh = malloc((size_t)k * K * 8);
    int8_t *signs = malloc((size_t)k * nk);
    ref_qlinear_forward(W, g, h, N, K, k, x, T, my, signs, what);
    ref_qlinear_backward(g, h, signs, what, N, K, k, x, dy, T, mdW, mdg, mdh, NULL);
    double e[4] = {ref_rel_l2(my, y, (size_t)T * N), ref_rel_l2(mdW, dW, nk), ref_rel_l2(mdg, dg, (size_t)k * N),
                   ref_rel_l2(mdh, dh, (size_t)k * K)};
    static const char *names[4] = {"y", "dW", "dg", "dh"};
    printf("N %d K %d paths %d T %d\n", N, K, k, T);
    for (int i = 0; i < 4; i++) {
      printf("%s: rel err %.3g\n", names[i], e[i]);
      CHECK(e[i] <= 1e-9, "%s: rel err %.3g against the peer (bound 1e-9)", names[i], e[i]);
    }
    free(my), free(what), free(mdW), free(mdg), free(mdh), free(signs);
  }
  free(W), free(g), free(h), free(x), free(dy), free(y), free(dW), free(dg), free(dh);
  rt_st_close(st);
  return CHECK_SUMMARY();
}
