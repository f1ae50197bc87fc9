/* fuzz_st: libFuzzer target over the safetensors reader. Beyond "never crash,
 * never read out of bounds", every accepted file must keep its promises
 * (tensors inside the input, sizes matching shapes, names found) and survive a
 * trip through the writer unchanged. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/formats/formats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks what the reader promises about one tensor; aborts (a finding) when
 * it does not hold. Touching every byte lets ASan see a bad pointer. */
static unsigned check_tensor(const RtSafetensors *st, const RtTensor *t, const uint8_t *data, size_t size) {
  uint64_t n = rt_dtype_size(t->dtype);
  if (!n || t->rank < 0 || t->rank > RT_MAX_DIMS) abort();
  for (int d = 0; d < t->rank; d++) {
    if (t->shape[d] < 0) abort();
    n *= (uint64_t)t->shape[d];
  }
  if (n != t->nbytes || rt_st_find(st, t->name) != t) abort();
  const uint8_t *p = t->data;
  if (t->nbytes && (p < data || t->nbytes > size || p > data + size - t->nbytes)) abort();
  unsigned sum = 0;
  for (uint64_t i = 0; i < t->nbytes; i++) sum += p[i];
  return sum;
}

/* Writes st's tensors with the writer and reads them back: same names,
 * order, dtypes, shapes and bytes. */
static void roundtrip(const RtSafetensors *st) {
  char path[128];
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/fuzz_st.%ld.safetensors", tmp && *tmp ? tmp : "/tmp", (long)getpid());
  RtStWriter *w = NULL;
  if (rt_st_writer_new(&w) != RB_OK) abort();
  for (int i = 0; i < rt_st_count(st); i++) {
    const RtTensor *t = rt_st_tensor(st, i);
    if (rt_st_writer_add(w, t->name, t->dtype, t->rank, t->shape, t->data) != RB_OK) abort();
  }
  const char *fmt = rt_st_meta(st, "format");
  if (fmt && rt_st_writer_meta(w, "format", fmt) != RB_OK) abort();
  RbBuf err = {0};
  if (rt_st_writer_finish(w, path, &err) != RB_OK) {
    fprintf(stderr, "%s\n", err.data);
    abort();
  }
  RtSafetensors *back = NULL;
  if (rt_st_open(path, &back, &err) != RB_OK) {
    fprintf(stderr, "%s\n", err.data);
    abort();
  }
  if (rt_st_count(back) != rt_st_count(st)) abort();
  for (int i = 0; i < rt_st_count(st); i++) {
    const RtTensor *a = rt_st_tensor(st, i), *b = rt_st_tensor(back, i);
    if (strcmp(a->name, b->name) || a->dtype != b->dtype || a->rank != b->rank || a->nbytes != b->nbytes)
      abort();
    for (int d = 0; d < a->rank; d++)
      if (a->shape[d] != b->shape[d]) abort();
    if (a->nbytes && memcmp(a->data, b->data, a->nbytes)) abort();
  }
  const char *fmt2 = rt_st_meta(back, "format");
  if (!fmt != !fmt2 || (fmt && strcmp(fmt, fmt2))) abort();
  rt_st_close(back);
  unlink(path);
  rb_buf_free(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  RtSafetensors *st = NULL;
  RbBuf err = {0};
  int rc = rt_st_open_memory(data, size, "fuzz.safetensors", &st, &err);
  if (rc != RB_OK) {
    /* Every refusal says why, naming the file. */
    if (st || !err.data || strncmp(err.data, "fuzz.safetensors: error: ", 25) != 0) abort();
    rb_buf_free(&err);
    return 0;
  }
  volatile unsigned sum = 0;
  for (int i = 0; i < rt_st_count(st); i++) sum += check_tensor(st, rt_st_tensor(st, i), data, size);
  (void)sum; /* volatile: the reads of every byte are not optimized away */
  if (rt_st_tensor(st, rt_st_count(st)) || rt_st_find(st, "__metadata__")) abort();
  roundtrip(st);
  rt_st_close(st);
  rb_buf_free(&err);
  return 0;
}
