/* buckets.c: the gradient buckets of data-parallel training (dist.h). The
 * all-reduce of a bucket starts once the backward has finished every gradient in
 * it, so buckets follow the backward's order and are cut greedily by size: large
 * enough that each NCCL call moves many bytes, small enough that the first starts
 * early and the last one left after the backward is short. */
#include "trainer/dist.h"

int tr_bucket_plan(const size_t *bytes, int n, size_t cap, TrBucket **out) {
  *out = NULL;
  if (n <= 0) return 0;
  TrBucket *b = rb_calloc((size_t)n, sizeof *b); /* at most one bucket a tensor */
  if (!b) return -1;
  int nb = 0;
  for (int i = 0; i < n; i++) {
    TrBucket *last = nb ? &b[nb - 1] : NULL;
    if (last && last->bytes + bytes[i] <= cap) {
      last->count++, last->bytes += bytes[i];
    } else {
      b[nb++] = (TrBucket){i, 1, bytes[i]};
    }
  }
  *out = b;
  return nb;
}
