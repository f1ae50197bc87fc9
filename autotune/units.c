/* units.c: what a tuning measures. A model's linear kernels are selected
 * once per batch bucket; each bucket serving a batch the user asked for is
 * one unit, timed at those batches (the schedule serves them all). The read
 * floor's bytes come from the target's layout and the activations. */
#include <stdio.h>

#include "autotune/autotune.h"

/* The bucket of op on t that serves batch: the smallest whose batch_max holds it, else the last. */
static int bucket_of(const CgTarget *t, const CgOp *op, int batch) {
  CgSchedule b[CG_MAX_BUCKETS];
  int n = t->linear_buckets ? t->linear_buckets(op, b) : 0;
  for (int i = 0; i < n; i++)
    if (batch <= b[i].batch_max) return b[i].batch_max;
  return n ? b[n - 1].batch_max : 0;
}

static void unit_bytes(const CgTarget *t, AtUnit *u) {
  const CgOp *op = &u->kernel.op;
  int ntot, nout = cg_ref_linear_width(op, &ntot);
  uint64_t P = (uint64_t)op->paths, K = (uint64_t)op->K;
  u->weight_bytes = t->layout_bytes(op) + 2 * P * (uint64_t)ntot + 2 * (uint64_t)op->nseg * P * K;
  u->row_bytes = 2 * (K + (uint64_t)nout + (op->epilogue == CG_EPI_ADD ? (uint64_t)ntot : 0));
}

int at_units_from_kernels(const CgTarget *t, const CgKernelSet *ks, const int *batches, int nb, AtUnit **out,
                          int *n) {
  *out = NULL;
  *n = 0;
  AtUnit *u = rb_calloc((size_t)ks->n + 1, sizeof *u);
  if (!u) return RB_EINTERNAL;
  for (int i = 0; i < ks->n; i++) {
    const CgKernel *k = &ks->k[i].kernel;
    if (k->op.kind != CG_LINEAR) continue;
    AtUnit one = {.kernel = *k};
    for (int j = 0; j < nb && one.nbatch < AT_MAX_BATCH; j++) {
      if (bucket_of(t, &k->op, batches[j]) != k->sched.batch_max) continue;
      int at = one.nbatch, dup = 0;
      for (int m = 0; m < one.nbatch; m++) dup |= one.batch[m] == batches[j];
      if (dup) continue;
      while (at > 0 && one.batch[at - 1] > batches[j]) one.batch[at] = one.batch[at - 1], at--;
      one.batch[at] = batches[j];
      one.nbatch++;
    }
    if (!one.nbatch) continue;
    unit_bytes(t, &one);
    u[(*n)++] = one;
  }
  if (!*n) {
    rb_free(u);
    u = NULL;
  }
  *out = u;
  return RB_OK;
}

uint64_t at_unit_floor_bytes(const AtUnit *u, int batch) { return u->weight_bytes + (uint64_t)batch * u->row_bytes; }

void at_schedule_describe(const CgSchedule *s, char out[48]) {
  snprintf(out, 48, "%s tile=%d,%d,%d,%d", cg_strategy_name(s->strategy), s->tile[0], s->tile[1], s->tile[2],
           s->tile[3]);
}
