/* weights.c: the tensors a plan binds, with the shapes and formats it needs,
 * and a weight file checked against them on the CPU before anything is
 * uploaded: a wrong file is a clear error naming the tensor, GPU or not. */
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"
#include "runtime/formats/formats.h"
#include "runtime/runtime.h"

/* The row width of every value: what its producing step says (tokens: 1). */
static int *value_widths(const RtPlan *p) {
  int *w = rb_calloc((size_t)p->nvalues + 1, sizeof *w);
  if (!w) return NULL;
  for (int v = 0; v < p->nvalues; v++) w[v] = 1;
  for (int i = 0; i < p->nsteps; i++)
    for (int j = 0; j < p->steps[i].nout; j++) w[p->steps[i].out[j]] = p->steps[i].width[j];
  return w;
}

static int emit_dense(RtPlanTensor *t, int step, const char *base, int rank, int64_t d0, int64_t d1,
                      RtPlanTensorFn fn, void *ctx) {
  memset(t, 0, sizeof *t);
  t->step = step;
  t->base = base;
  cg_dense_name(t->name, sizeof t->name, base);
  t->rank = rank;
  t->shape[0] = d0;
  t->shape[1] = d1;
  return fn(ctx, t);
}

int rt_plan_tensors(const RtPlan *p, RtPlanTensorFn fn, void *ctx) {
  int *width = value_widths(p);
  if (!width) return RB_EINTERNAL;
  RtPlanTensor t;
  int rc = 0;
  for (int i = 0; i < p->nsteps && !rc; i++) {
    const RtPlanStep *s = &p->steps[i];
    switch (s->op) {
    case IR_EMBED: {
      const CgOp *op = &p->kernels[s->kernels.main].kernel.op;
      rc = emit_dense(&t, i, s->weights[0], 2, op->vocab, op->dim, fn, ctx);
      break;
    }
    case IR_RMSNORM: rc = emit_dense(&t, i, s->weights[0], 1, s->width[0], 0, fn, ctx); break;
    case IR_LINEAR:
    case IR_LINEAR_ADD:
    case IR_LINEAR_SWIGLU: {
      if (s->tied) break; /* the embedding's table, bound by its own step */
      int K = width[s->in[0]];
      int swiglu = s->op == IR_LINEAR_SWIGLU, nseg = swiglu ? 2 : s->nweights;
      for (int g = 0; g < nseg && !rc; g++) {
        int N = swiglu ? s->width[0] : s->width[g];
        if (!s->paths) {
          rc = emit_dense(&t, i, s->weights[g], 2, N, K, fn, ctx);
          continue;
        }
        for (int part = 0; part < CG_PACKED_NPART && !rc; part++) {
          memset(&t, 0, sizeof t);
          t.step = i;
          t.packed = 1;
          t.part = (CgPackedPart)part;
          t.base = s->weights[g];
          t.k = s->paths;
          t.N = N;
          t.K = K;
          cg_packed_name(t.name, sizeof t.name, s->weights[g], t.part);
          t.rank = cg_packed_shape(t.part, s->paths, N, K, t.shape);
          rc = fn(ctx, &t);
        }
      }
      break;
    }
    default: break;
    }
  }
  rb_free(width);
  return rc;
}

typedef struct {
  const RtPlan *p;
  const RtSafetensors *f;
  const char *path;
  RbBuf *err;
} Check;

static void put_shape(RbBuf *b, int rank, const int64_t *shape) {
  rb_buf_puts(b, "[");
  for (int i = 0; i < rank; i++) rb_buf_printf(b, "%s%lld", i ? ", " : "", (long long)shape[i]);
  rb_buf_puts(b, "]");
}

/* Where the IR binds a tensor, for messages: "IR line 17". */
static int line_of(const Check *c, const RtPlanTensor *t) { return c->p->steps[t->step].line; }

static int check_packed(const Check *c, const RtPlanTensor *t, const RtTensor *x) {
  if (!x) {
    char dense[520];
    cg_dense_name(dense, sizeof dense, t->base);
    if (t->part == CG_PACKED_BITS && rt_st_find(c->f, dense))
      rb_buf_printf(c->err, "%s: '%s' is not quantized (it has %s, not %s); quantize the file with 'rabit quantize' "
                            "(the IR, line %d, gives it k = %d), or run the model with --fp16",
                    c->path, t->base, dense, t->name, line_of(c, t), t->k);
    else rb_buf_printf(c->err, "%s: no tensor '%s' (IR line %d)", c->path, t->name, line_of(c, t));
    return RB_EUSER;
  }
  int k = t->part == CG_PACKED_BITS ? cg_packed_paths(x->rank, x->shape) : 0;
  if (k && k != t->k && x->shape[1] == t->shape[1] && x->shape[2] == t->shape[2]) {
    rb_buf_printf(c->err, "%s: '%s' has k = %d residual paths, the IR (line %d) gives it k = %d; quantize with the "
                          "same IR, or compile with the k the file has", c->path, t->name, k, line_of(c, t), t->k);
    return RB_EUSER;
  }
  RbBuf why = {0};
  int rc = cg_packed_check(t->part, rt_dtype_name(x->dtype), x->rank, x->shape, t->k, t->N, t->K, t->name, &why);
  if (rc) rb_buf_printf(c->err, "%s: %s (IR line %d)", c->path, why.data ? why.data : "", line_of(c, t));
  rb_buf_free(&why);
  return rc;
}

static int check_one(void *ctx, const RtPlanTensor *t) {
  const Check *c = ctx;
  const RtTensor *x = rt_st_find(c->f, t->name);
  if (t->packed) return check_packed(c, t, x);
  if (!x) {
    rb_buf_printf(c->err, "%s: no tensor '%s' (IR line %d)", c->path, t->name, line_of(c, t));
    return RB_EUSER;
  }
  int ok = x->rank == t->rank;
  for (int i = 0; ok && i < t->rank; i++) ok = x->shape[i] == t->shape[i];
  if (!ok) {
    rb_buf_printf(c->err, "%s: tensor '%s' has shape ", c->path, t->name);
    put_shape(c->err, x->rank, x->shape);
    rb_buf_puts(c->err, ", the model needs ");
    put_shape(c->err, t->rank, t->shape);
    rb_buf_printf(c->err, " (IR line %d)", line_of(c, t));
    return RB_EUSER;
  }
  if (x->dtype != RT_F16 && x->dtype != RT_BF16 && x->dtype != RT_F32) {
    rb_buf_printf(c->err, "%s: tensor '%s' is %s; the model needs F16, BF16 or F32", c->path, t->name,
                  rt_dtype_name(x->dtype));
    return RB_EUSER;
  }
  return RB_OK;
}

int rt_weights_check(const RtPlan *p, const RtSafetensors *f, const char *path, RbBuf *err) {
  Check c = {p, f, path, err};
  return rt_plan_tensors(p, check_one, &c);
}
