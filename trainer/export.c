/* export.c: trained weights to the canonical packed file that `rabit run`
 * loads. The IR says which weights are quantized and with what k (as in
 * quantize.c); their fp32 scales are rebalanced per path into f16's range and
 * their signs kept; every other tensor is copied from the original file. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"
#include "runtime/formats/formats.h"
#include "runtime/runtime.h"
#include "trainer/trainer.h"

#define F16_MAX 65504.0

/* One quantized weight the IR binds. */
typedef struct {
  const char *base; /* the IR's name, in the graph's arena */
  int N, K, k, line;
} Target;

/* Everything one export holds, freed by export_free. */
typedef struct {
  const TrExportOptions *o;
  RtCompiled c;
  int compiled;
  RtSafetensors *st;
  Target *t;
  int nt;
  RbMap by_dense; /* "<base>.weight" -> index into t */
  RbArena arena;
} Export;

/* The dtype packed.c names for a part, as the safetensors writer spells it. */
static RtDtype part_dtype(CgPackedPart p) {
  for (int t = 0; t < RT_NDTYPE; t++)
    if (!strcmp(rt_dtype_name((RtDtype)t), cg_packed_dtype(p))) return (RtDtype)t;
  return RT_NDTYPE;
}

/* The IR's quantized weights, each checked against the original file. The
 * unfused graph's linears read one [T, K] input; weight i of an op is
 * [ints[i], K] (linear_swiglu's two share ints[0]). */
static int find_targets(Export *x, RbBuf *err) {
  const IrGraph *g = x->c.graph;
  const char *in = x->o->weights, *ir = x->c.shown;
  int cap = 0;
  for (int i = 0; i < g->nnodes; i++) cap += g->nodes[i].nweights;
  if (!(x->t = rb_arena_alloc(&x->arena, ((size_t)cap + 1) * sizeof *x->t))) return RB_EINTERNAL;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    int k = n->dead ? 0 : ir_node_paths(n);
    if (!k) continue;
    int64_t K = g->values[n->in[0]].type.dim[1].n;
    for (int w = 0; w < n->nweights; w++) {
      int64_t N = n->ints[w < n->nint ? w : 0];
      const char *base = n->weights[w];
      char name[1024];
      if (cg_dense_name(name, sizeof name, base)) {
        rb_buf_printf(err, "%s:%d: weight name '%.64s...' is too long", ir, n->line, base);
        return RB_EUSER;
      }
      const RtTensor *t = rt_st_find(x->st, name);
      if (!t) {
        rb_buf_printf(err, "%s: no tensor '%s', which the IR (%s:%d) binds; export copies the other tensors from the "
                           "original full-precision file", in, name, ir, n->line);
        return RB_EUSER;
      }
      if (t->rank != 2 || t->shape[0] != N || t->shape[1] != K) {
        rb_buf_printf(err, "%s: '%s' is not [%lld, %lld] as the IR (%s:%d) says", in, name, (long long)N,
                      (long long)K, ir, n->line);
        return RB_EUSER;
      }
      if (N > INT32_MAX || K > INT32_MAX) {
        rb_buf_printf(err, "%s: '%s' is too large to export", in, name);
        return RB_EUSER;
      }
      char *key = rb_arena_strdup(&x->arena, name);
      if (!key) return RB_EINTERNAL;
      if (rb_map_get(&x->by_dense, key, NULL)) continue; /* bound twice (a tied weight): one copy */
      x->t[x->nt] = (Target){base, (int)N, (int)K, k, n->line};
      if (rb_map_put(&x->by_dense, key, x->nt++)) return RB_EINTERNAL;
    }
  }
  if (!x->nt) {
    rb_buf_printf(err, "%s: the IR quantizes no linear (each has quant = none)", ir);
    return RB_EUSER;
  }
  return RB_OK;
}

/* Rebalance path p of g (length N) and h (length K) and round both to f16:
 * c = sqrt(max|h| / max|g|) makes max|g c| = max|h / c|, which leaves
 * g_n h_c unchanged and keeps both as far from f16's limits as one scalar
 * can. Refuses (naming the tensor, the path and the value) a value that is
 * not finite, or that after rebalancing exceeds f16 or underflows to 0. */
static int rebalance(const char *out, const char *base, int p, const float *g, int N, const float *h, int K,
                     uint16_t *g16, uint16_t *h16, RbBuf *err) {
  char gname[1024], hname[1024];
  cg_packed_name(gname, sizeof gname, base, CG_PACKED_G);
  cg_packed_name(hname, sizeof hname, base, CG_PACKED_H);
  double mg = 0.0, mh = 0.0;
  for (int pass = 0; pass < 2; pass++) {
    const float *v = pass ? h : g;
    int n = pass ? K : N;
    double *m = pass ? &mh : &mg;
    for (int i = 0; i < n; i++) {
      if (!isfinite(v[i])) {
        rb_buf_printf(err, "%s: '%s' path %d %s %d is %g: the trained scale is not finite", out, pass ? hname : gname,
                      p + 1, pass ? "column" : "row", i, (double)v[i]);
        return RB_EUSER;
      }
      if (fabs((double)v[i]) > *m) *m = fabs((double)v[i]);
    }
  }
  double c = mg > 0.0 && mh > 0.0 ? sqrt(mh / mg) : 1.0;
  for (int pass = 0; pass < 2; pass++) {
    const float *v = pass ? h : g;
    uint16_t *o16 = pass ? h16 : g16;
    int n = pass ? K : N;
    for (int i = 0; i < n; i++) {
      double s = pass ? (double)v[i] / c : (double)v[i] * c;
      uint16_t b = rb_f16_from_f32((float)s);
      const char *why = fabs(s) > F16_MAX ? "exceeds f16's 65504" : s != 0.0 && rb_f32_from_f16(b) == 0.0f ? "underflows to 0 in f16" : NULL;
      if (why) {
        rb_buf_printf(err, "%s: '%s' path %d %s %d is %g, %g after rebalancing (c = %g, max|g| = %g, max|h| = %g): it %s",
                      out, pass ? hname : gname, p + 1, pass ? "column" : "row", i, (double)v[i], s, c, mg, mh, why);
        return RB_EUSER;
      }
      o16[i] = b;
    }
  }
  return RB_OK;
}

/* Add one weight's three packed tensors: the bits as given or derived, the
 * scales rebalanced. */
static int add_weight(Export *x, RtStWriter *w, const Target *t, RbBuf *err) {
  const char *out = x->o->out;
  TrExportWeight tw = {0};
  int rc = x->o->get(x->o->ctx, t->base, t->N, t->K, t->k, &tw, err);
  if (rc) return rc;
  if (!tw.g || !tw.h || (!tw.bits && !tw.W)) {
    rb_buf_printf(err, "%s: no trained state for '%s'", out, t->base);
    return RB_EUSER;
  }
  void *part[CG_PACKED_NPART] = {0};
  for (int p = 0; p < CG_PACKED_NPART; p++)
    if (!(part[p] = rb_malloc(cg_packed_part_bytes((CgPackedPart)p, t->k, t->N, t->K)))) rc = RB_EINTERNAL;
  size_t nk = (size_t)t->N * t->K;
  for (size_t i = 0; !rc && tw.W && i < nk; i++)
    if (!isfinite(tw.W[i])) {
      rb_buf_printf(err, "%s: '%s' latent weight (%zu, %zu) is %g: not finite", out, t->base, i / (size_t)t->K,
                    i % (size_t)t->K, (double)tw.W[i]);
      rc = RB_EUSER;
    }
  for (int p = 0; !rc && p < t->k; p++)
    rc = rebalance(out, t->base, p, tw.g + (size_t)p * t->N, t->N, tw.h + (size_t)p * t->K, t->K,
                   (uint16_t *)part[CG_PACKED_G] + (size_t)p * t->N, (uint16_t *)part[CG_PACKED_H] + (size_t)p * t->K,
                   err);
  /* The signs come from the fp32 scales, as the trainer's step derives them:
   * the rebalanced f16 ones could flip a sign where the residual is ~0. */
  if (!rc && tw.bits) memcpy(part[CG_PACKED_BITS], tw.bits, cg_packed_part_bytes(CG_PACKED_BITS, t->k, t->N, t->K));
  else if (!rc) {
    RbBuf why = {0};
    rc = tr_derive_bits(tw.W, t->N, t->K, t->k, tw.g, tw.h, part[CG_PACKED_BITS], NULL, &why);
    if (rc) rb_buf_printf(err, "%s: '%s': %s", out, t->base, why.data ? why.data : "");
    rb_buf_free(&why);
  }
  for (int p = 0; !rc && p < CG_PACKED_NPART; p++) {
    char name[1024];
    int64_t shape[3];
    int rank = cg_packed_shape((CgPackedPart)p, t->k, t->N, t->K, shape);
    cg_packed_name(name, sizeof name, t->base, (CgPackedPart)p);
    rc = rt_st_writer_add(w, name, part_dtype((CgPackedPart)p), rank, shape, part[p]);
  }
  if (rc == RB_EINTERNAL) rb_buf_printf(err, "%s: out of memory exporting '%s'", out, t->base);
  for (int p = 0; p < CG_PACKED_NPART; p++) rb_free(part[p]);
  return rc;
}

static int write_all(Export *x, RbBuf *err) {
  const TrExportOptions *o = x->o;
  RtStWriter *w = NULL;
  if (rt_st_writer_new(&w)) return RB_EINTERNAL;
  int rc = RB_OK;
  /* The input's order, each quantized weight in its .weight's place. */
  for (int i = 0, n = rt_st_count(x->st); i < n && !rc; i++) {
    const RtTensor *t = rt_st_tensor(x->st, i);
    int j;
    if (rb_map_get(&x->by_dense, t->name, &j)) rc = add_weight(x, w, &x->t[j], err);
    else rc = rt_st_writer_add(w, t->name, t->dtype, t->rank, t->shape, t->data);
  }
  if (rc) {
    rt_st_writer_free(w); /* a writer error is reported by finish; ours are in err already */
    return rc;
  }
  char num[32];
  rt_st_writer_meta(w, "format", "rabit-packed 1");
  snprintf(num, sizeof num, "%d", o->fe.paths ? o->fe.paths : x->c.graph->quant_default);
  rt_st_writer_meta(w, "paths", num);
  const char *model = rt_st_meta(x->st, "model");
  if (model) rt_st_writer_meta(w, "model", model);
  if (x->c.graph->model) rt_st_writer_meta(w, "rabit_ir_model", x->c.graph->model);
  rt_st_writer_meta(w, "trained_by", "rabit train");
  snprintf(num, sizeof num, "%llu", (unsigned long long)o->step);
  rt_st_writer_meta(w, "step", num);
  snprintf(num, sizeof num, "%llu", (unsigned long long)o->tokens);
  rt_st_writer_meta(w, "tokens", num);
  return rt_st_writer_finish(w, o->out, err);
}

static void export_free(Export *x) {
  rt_st_close(x->st);
  rb_map_free(&x->by_dense);
  rb_arena_free(&x->arena);
  if (x->compiled) rt_compiled_free(&x->c);
}

int tr_export(const TrExportOptions *o, RbBuf *err) {
  if (!o->ir || !o->weights || !o->out || !o->get) {
    rb_buf_printf(err, "export: the IR, the original weights, the output and the trained state are all needed");
    return RB_EUSER;
  }
  Export x = {.o = o};
  RtCompileOptions co = {.path = o->ir, .fe = o->fe, .stop = RT_STAGE_VERIFY};
  int rc = rt_compile(&co, &x.c, err);
  x.compiled = 1;
  if (x.c.diag.data) rb_buf_puts(err, x.c.diag.data);
  if (!rc) rc = rt_st_open(o->weights, &x.st, err);
  if (!rc) rc = find_targets(&x, err);
  if (!rc) rc = write_all(&x, err);
  export_free(&x);
  return rc;
}

/* ---- from a checkpoint ---- */

typedef struct {
  const TrCkpt *c;
  const char *path;
  float *copy[3]; /* aligned copies of the last weight's tensors, when the file's are not */
} FromCkpt;

/* A checkpoint tensor as fp32 of the given shape, aligned (copied when the
 * file's bytes are not), or RB_EUSER naming the checkpoint and the tensor. */
static int ckpt_f32(FromCkpt *f, const char *base, TrCkptPart part, int64_t d0, int64_t d1, int slot,
                    const float **out, RbBuf *err) {
  char name[1024];
  if (tr_ckpt_name(name, sizeof name, base, part)) return RB_EUSER;
  const TrCkptTensor *t = tr_ckpt_find(f->c, name);
  if (!t) {
    rb_buf_printf(err, "%s: no tensor '%s' for the quantized weight '%s'", f->path, name, base);
    return RB_EUSER;
  }
  if (t->dtype != RT_F32 || t->rank != 2 || t->shape[0] != d0 || t->shape[1] != d1) {
    rb_buf_printf(err, "%s: '%s' must be F32 [%lld, %lld] (the IR's shape and k)", f->path, name, (long long)d0,
                  (long long)d1);
    return RB_EUSER;
  }
  rb_free(f->copy[slot]);
  f->copy[slot] = NULL;
  if ((uintptr_t)t->data % sizeof(float)) {
    size_t bytes = (size_t)d0 * (size_t)d1 * sizeof(float);
    if (!(f->copy[slot] = rb_malloc(bytes ? bytes : 1))) return RB_EINTERNAL;
    memcpy(f->copy[slot], t->data, bytes);
    *out = f->copy[slot];
  } else *out = t->data;
  return RB_OK;
}

static int get_from_ckpt(void *ctx, const char *base, int N, int K, int k, TrExportWeight *w, RbBuf *err) {
  FromCkpt *f = ctx;
  int rc = ckpt_f32(f, base, TR_CKPT_W, N, K, 0, &w->W, err);
  if (!rc) rc = ckpt_f32(f, base, TR_CKPT_G, k, N, 1, &w->g, err);
  if (!rc) rc = ckpt_f32(f, base, TR_CKPT_H, k, K, 2, &w->h, err);
  w->bits = NULL; /* the optimizer moved W after the step's signs: derive them again */
  return rc;
}

int tr_export_from_checkpoint(const char *ir, const FeOptions *fe, const char *ckpt, const char *weights,
                              const char *out, RbBuf *err) {
  TrCkpt c;
  int rc = tr_ckpt_read(ckpt, &c, err);
  if (rc) return rc;
  TrExportOptions o = {.ir = ir ? ir : c.opt.ir, .weights = weights ? weights : c.opt.weights, .out = out,
                       .step = c.step, .tokens = c.tokens_seen, .get = get_from_ckpt};
  if (fe) o.fe = *fe;
  else o.fe.paths = c.opt.paths;
  FromCkpt f = {.c = &c, .path = ckpt};
  o.ctx = &f;
  if (!o.ir || !o.weights) {
    rb_buf_printf(err, "%s: the checkpoint records no %s; name it", ckpt, !o.ir ? "IR file" : "weight file");
    rc = RB_EUSER;
  }
  /* The checkpoint's model must be the IR's: compile it once to ask. */
  if (!rc && c.model) {
    RtCompiled comp;
    RtCompileOptions co = {.path = o.ir, .fe = o.fe, .stop = RT_STAGE_VERIFY};
    rc = rt_compile(&co, &comp, err);
    if (comp.diag.data) rb_buf_puts(err, comp.diag.data);
    if (!rc && (!comp.graph->model || strcmp(comp.graph->model, c.model))) {
      rb_buf_printf(err, "%s: the checkpoint trains model '%s', the IR %s is model '%s'", ckpt, c.model, o.ir,
                    comp.graph->model ? comp.graph->model : "(unnamed)");
      rc = RB_EUSER;
    }
    rt_compiled_free(&comp);
  }
  if (!rc) rc = tr_export(&o, err);
  for (int i = 0; i < 3; i++) rb_free(f.copy[i]);
  tr_ckpt_free(&c);
  return rc;
}

void tr_sign_bits(const float *Wp, int N, int K, int k, uint32_t *bits) {
  size_t words = (size_t)cg_packed_words(K);
  memset(bits, 0, (size_t)k * N * words * sizeof *bits);
  for (int p = 0; p < k; p++)
    for (int n = 0; n < N; n++) {
      const float *row = Wp + ((size_t)p * N + n) * K;
      uint32_t *wb = bits + ((size_t)p * N + n) * words;
      for (int c = 0; c < K; c++)
        if (!(row[c] >= 0.0f)) wb[c >> 5] |= 1u << (c & 31); /* sign(0) = +1, as the kernels */
    }
}
