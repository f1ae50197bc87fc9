/* fuzz_gguf: libFuzzer target over the GGUF reader. Beyond "never crash",
 * every accepted file must keep its promises: tensor data inside the input,
 * names findable, no two tensors sharing a byte, every metadata accessor safe on every key, dequantization
 * of each supported tensor. tests/common/fuzz_replay_main.c turns it into a
 * plain program that replays the corpus (CI). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/formats/formats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  RtGguf *g = NULL;
  RbBuf err = {0};
  int rc = rt_gguf_open_memory(data, size, "fuzz.gguf", &g, &err);
  if (rc != RB_OK) {
    /* a rejection must say why, and not hand back a half-made handle */
    if (g || !err.len || strncmp(err.data, "fuzz.gguf: error: ", 18) != 0) abort();
    rb_buf_free(&err);
    return 0;
  }
  for (int i = 0; i < rt_gguf_kv_count(g); i++) {
    int type;
    const char *k = rt_gguf_kv_key(g, i, &type);
    uint64_t u, count;
    double d;
    int64_t v;
    const char *s;
    size_t len;
    int et;
    if (!k) abort();
    (void)rt_gguf_u64(g, k, &u);
    (void)rt_gguf_f64(g, k, &d);
    if (rt_gguf_str(g, k, &s, &len) && s[len] != 0) abort();
    if (rt_gguf_arr(g, k, &et, &count) && count) {
      uint64_t last = count - 1;
      if (rt_gguf_arr_str(g, k, last, &s, &len) && s[len] != 0) abort();
      (void)rt_gguf_arr_str(g, k, 0, &s, &len);
      (void)rt_gguf_arr_i64(g, k, last, &v);
      (void)rt_gguf_arr_f64(g, k, last, &d);
      if (rt_gguf_arr_i64(g, k, count, &v)) abort(); /* one past the end */
    }
  }
  for (int i = 0; i < rt_gguf_count(g); i++) {
    const RtGgufTensor *t = rt_gguf_tensor(g, i);
    const uint8_t *p = t->data;
    if (p < data || p > data + size || t->nbytes > (uint64_t)(data + size - p)) abort();
    if (rt_gguf_find(g, t->name) != t) abort();
    for (int j = 0; j < i; j++) { /* no two accepted tensors share a byte (quadratic: few tensors here) */
      const RtGgufTensor *u = rt_gguf_tensor(g, j);
      const uint8_t *q = u->data;
      if (p < q + u->nbytes && q < p + t->nbytes) abort();
    }
    uint64_t n = 1;
    for (int d = 0; d < RT_MAX_DIMS; d++) n *= (uint64_t)t->ne[d];
    if (n > (1u << 20)) continue; /* keep each run fast */
    float *out = malloc((size_t)n * sizeof(float));
    if (!out) continue;
    RbBuf derr = {0};
    (void)rt_gguf_dequant(t, out, &derr);
    /* the un-permutation on whatever shape came in: errors allowed, not crashes */
    if (t->rank == 2) (void)rt_gguf_unpermute_rows(out, t->ne[1], t->ne[0], (int)(t->ne[1] % 7) + 1, &derr);
    rb_buf_free(&derr);
    free(out);
  }
  rt_gguf_close(g);
  rb_buf_free(&err);
  return 0;
}

