/* exec.c: the executor, one for both devices. It walks a plan's steps in
 * order over device buffers: each step launches its generated kernels (or
 * cuBLAS for dense linears on a GPU, the host's dense linear on the CPU),
 * activations live in buffers reused once their last reader ran, and every
 * attention step owns a KV cache. Memory and launches go through the
 * program's device ops (program.c), so a host plan runs here unchanged, in
 * host memory. On a GPU a decode step (one token) is captured once as a CUDA
 * graph and replayed; the position lives in device memory, so the same graph
 * serves every position. The host has no graphs: its decode runs the steps. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "runtime/formats/formats.h"
#include "runtime/runtime.h"

#define MAX_BUFS 4096

typedef struct {
  RtDevPtr p;
  size_t bytes;
  int refs; /* live values viewing it; 0 = free for reuse */
} Buf;

/* A value is a view: columns [col, col+width) of rows of length ld in a buffer. */
typedef struct {
  int buf, col, ld, width, f32;
  int last; /* the last step reading it */
} Val;

typedef struct {
  RtLinear *lin;          /* quantized linear */
  RtDevPtr w;             /* dense linear: (Ntot, K) fp16, or the tied table */
  int w_owned;
  RtDevPtr table, norm;   /* embed, rmsnorm */
  RtDevPtr kc, vc;        /* attention */
  /* A fused rmsnorm (CgOp.eps on the linear's decode buckets): on the linear, the norm's
   * step; on the norm, the linear's; -1 elsewhere. norm_host: the norm's weight, kept
   * from its binding until the linear's folds it into h. */
  int norm_step, fused_into;
  uint16_t *norm_host;
} StepState;

#define POOL_SIZE (1u << 20)
#define POOL_SCALES 8 /* distinct scales a model's random tensors use (1/sqrt(K) per K, 1) */

struct RtModel {
  RtProgram *prog;
  const RtPlan *p;
  RtGpu *gpu;
  RtStream stream;
  RtBlas *blas;
  RtModelOptions o;
  int max_ctx, vocab, T; /* T: rows of the last forward */
  Val *val;
  Buf buf[MAX_BUFS];
  int nbuf;
  StepState *st;
  RtDevPtr tokens, pos, scratch;
  RtDevPtr attn_ws; /* the split decode attention's workspace, shared by every layer (one stream) */
  RtLinearScratch lin; /* the dequant buckets': W_hat of the largest layer, shared by every layer */
  RtDevPtr nll_ids, nll_rows; /* rt_model_nll: a window's ids (max_ctx), its rows' NLL (max_ctx f32) */
  float *nll_host;
  size_t weight_bytes, total_bytes;
  RtGraph *decode;
  uint64_t rng;
  float *pool; /* random weights: N(0,1) samples reused cyclically, so that a
                  7B-shaped model fills in seconds rather than minutes */
  struct {      /* ... and those samples times a tensor's scale, as fp16, per scale seen: */
    float scale; /* a tensor is then copies from the pool, not a conversion per value */
    uint16_t *h;
  } scaled[POOL_SCALES];
  int nscaled;
  char error[1024]; /* why the last call failed, for rt_model_error */
};

/* Record why a call failed (the caller shows rt_model_error). Returns rc. */
static int fail(RtModel *m, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(RtModel *m, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m->error, sizeof m->error, fmt, ap);
  va_end(ap);
  return rc;
}

const char *rt_model_error(const RtModel *m) { return m->error[0] ? m->error : "no error recorded"; }


/* ---- weights ---- */

static uint64_t next_rand(RtModel *m) {
  m->rng ^= m->rng << 13;
  m->rng ^= m->rng >> 7;
  m->rng ^= m->rng << 17;
  return m->rng;
}

/* A standard normal sample, for random weights. */
static float randn(RtModel *m) {
  double u = ((next_rand(m) >> 11) + 0.5) / 9007199254740992.0, v = (next_rand(m) >> 11) / 9007199254740992.0;
  return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static int device_upload(RtModel *m, RtDevPtr *d, const void *h, size_t bytes) {
  if (rt_program_alloc(m->prog, d, bytes) || rt_program_upload(m->prog, *d, h, bytes)) return RB_EINTERNAL;
  m->weight_bytes += bytes;
  return RB_OK;
}

/* The fp16 pool of N(0, scale^2) samples: the shared N(0, 1) ones times scale,
 * converted once per scale. NULL when out of memory. */
static const uint16_t *random_pool(RtModel *m, float scale) {
  if (!m->pool) {
    if (!(m->pool = rb_malloc(POOL_SIZE * sizeof *m->pool))) return NULL;
    for (size_t i = 0; i < POOL_SIZE; i++) m->pool[i] = randn(m);
  }
  for (int i = 0; i < m->nscaled; i++)
    if (m->scaled[i].scale == scale) return m->scaled[i].h;
  int slot = m->nscaled < POOL_SCALES ? m->nscaled++ : POOL_SCALES - 1; /* past 8 scales, the last slot is redone */
  uint16_t *h = m->scaled[slot].h ? m->scaled[slot].h : rb_malloc(POOL_SIZE * 2);
  if (!h) return NULL;
  for (size_t i = 0; i < POOL_SIZE; i++) h[i] = rb_f16_from_f32(scale * m->pool[i]);
  m->scaled[slot].scale = scale, m->scaled[slot].h = h;
  return h;
}

/* Tensor `name` of the file as n fp16 values (F16 as is, F32 and BF16
 * converted; rt_weights_check has checked its shape and dtype); random
 * weights draw N(0, scale^2), or the constant `fill` when scale is 0.
 * Returns an rb_malloc'ed array. */
static int load_f16(RtModel *m, RtSafetensors *f, const char *name, int rank, const int64_t *shape, float scale,
                    float fill, uint16_t **out) {
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)shape[i];
  uint16_t *h = rb_malloc(n * 2);
  if (!h) return RB_EINTERNAL;
  *out = h;
  if (!f) {
    if (!scale) {
      (void)next_rand(m); /* the draw a scaled tensor's start takes: the same stream either way */
      uint16_t cfill = rb_f16_from_f32(fill);
      for (size_t i = 0; i < n; i++) h[i] = cfill;
      return RB_OK;
    }
    const uint16_t *src = random_pool(m, scale);
    if (!src) return RB_EINTERNAL;
    for (size_t i = 0, at = next_rand(m) % POOL_SIZE; i < n; at = 0) { /* from a random point, cyclically */
      size_t run = POOL_SIZE - at < n - i ? POOL_SIZE - at : n - i;
      memcpy(h + i, src + at, run * 2);
      i += run;
    }
    return RB_OK;
  }
  const RtTensor *t = rt_st_find(f, name); /* rt_weights_check vouched for its shape and dtype */
  if (!t) return RB_EINTERNAL;
  const unsigned char *d = t->data;
  for (size_t i = 0; i < n; i++) {
    switch (t->dtype) {
    case RT_F16: memcpy(&h[i], d + 2 * i, 2); break;
    case RT_F32: {
      float v;
      memcpy(&v, d + 4 * i, 4);
      h[i] = rb_f16_from_f32(v);
      break;
    }
    case RT_BF16: {
      uint32_t b = (uint32_t)(d[2 * i] | d[2 * i + 1] << 8) << 16;
      float v;
      memcpy(&v, &b, 4);
      h[i] = rb_f16_from_f32(v);
      break;
    }
    default: return RB_EINTERNAL;
    }
  }
  return RB_OK;
}

/* The packed tensors of one quantized segment <base> (names, shapes and
 * dtypes from packed.c); random weights of the same shapes without a file. */
static int load_packed(RtModel *m, RtSafetensors *f, const char *base, int k, int N, int K, uint32_t **bits,
                       uint16_t **g, uint16_t **h) {
  uint64_t words = cg_packed_count(CG_PACKED_BITS, k, N, K), W = (uint64_t)cg_packed_words(K);
  char name[512];
  *bits = rb_malloc(words * 4);
  if (!*bits) return RB_EINTERNAL;
  if (!f) {
    uint32_t pad = cg_packed_pad_mask(K); /* pad columns must be 0 */
    for (uint64_t i = 0; i < words; i++) (*bits)[i] = (uint32_t)next_rand(m) & (i % W == W - 1 ? pad : ~0u);
  } else {
    cg_packed_name(name, sizeof name, base, CG_PACKED_BITS);
    const RtTensor *t = rt_st_find(f, name); /* checked by rt_weights_check */
    if (!t) return RB_EINTERNAL;
    memcpy(*bits, t->data, words * 4);
  }
  int64_t gs[3], hs[3];
  cg_packed_shape(CG_PACKED_G, k, N, K, gs);
  cg_packed_shape(CG_PACKED_H, k, N, K, hs);
  cg_packed_name(name, sizeof name, base, CG_PACKED_G);
  int rc = load_f16(m, f, name, 2, gs, 0, 1.0f / sqrtf((float)K * k), g);
  cg_packed_name(name, sizeof name, base, CG_PACKED_H);
  if (!rc) rc = load_f16(m, f, name, 2, hs, 0, 1.0f, h);
  return rc;
}

static int bind_linear(RtModel *m, int step, RtSafetensors *f, RbBuf *err) {
  const RtPlanStep *ps = &m->p->steps[step];
  StepState *ss = &m->st[step];
  const CgOp *op = rt_linear_op(m->p, step);
  if (!op) return RB_EINTERNAL;
  int K = op->K, k = op->paths;
  uint32_t *bits[CG_MAX_SEG] = {0};
  uint16_t *g[CG_MAX_SEG] = {0}, *h[CG_MAX_SEG] = {0};
  int rc = RB_OK;
  for (int i = 0; i < op->nseg && !rc; i++)
    rc = load_packed(m, f, ps->weights[i], k, op->N[i], K, &bits[i], &g[i], &h[i]);
  if (!rc)
    rc = rt_linear_bind(m->prog, step, (const uint32_t *const *)bits, (const uint16_t *const *)g,
                        (const uint16_t *const *)h, &ss->lin, err);
  if (!rc && ss->norm_step >= 0) {
    StepState *ns = &m->st[ss->norm_step];
    rc = rt_linear_fold_norm(m->prog, ss->lin, (const uint16_t *const *)h, ns->norm_host, err);
    if (!rc) m->weight_bytes += (size_t)op->nseg * k * K * 2;
    rb_free(ns->norm_host);
    ns->norm_host = NULL;
  }
  for (int i = 0; i < op->nseg; i++) {
    if (!rc) m->weight_bytes += cg_packed_bytes(k, op->N[i], K);
    rb_free(bits[i]), rb_free(g[i]), rb_free(h[i]);
  }
  return rc;
}

/* A dense linear: the segments' fp16 weights stacked into one (Ntot, K) matrix. */
static int bind_dense(RtModel *m, int step, RtSafetensors *f, int K, RbBuf *err) {
  const RtPlanStep *ps = &m->p->steps[step];
  StepState *ss = &m->st[step];
  if (ps->tied) {
    for (int j = 0; j < step; j++)
      if (m->p->steps[j].op == IR_EMBED && !strcmp(m->p->steps[j].weights[0], ps->weights[0])) {
        ss->w = m->st[j].table;
        return RB_OK;
      }
    rb_buf_printf(err, "tied weight '%s' has no embedding step", ps->weights[0]);
    return RB_EUSER;
  }
  int swiglu = ps->op == IR_LINEAR_SWIGLU;
  int nseg = swiglu ? 2 : ps->nweights;
  int64_t rows[4];
  size_t total = 0;
  for (int i = 0; i < nseg; i++) total += (size_t)(rows[i] = swiglu ? ps->width[0] : ps->width[i]);
  uint16_t *all = rb_malloc(total * (size_t)K * 2);
  if (!all) return RB_EINTERNAL;
  int rc = RB_OK;
  size_t row0 = 0;
  for (int i = 0; i < nseg && !rc; row0 += (size_t)rows[i++]) {
    char name[512];
    cg_dense_name(name, sizeof name, ps->weights[i]);
    int64_t shape[2] = {rows[i], K};
    uint16_t *w = NULL;
    rc = load_f16(m, f, name, 2, shape, 1.0f / sqrtf((float)K), 0, &w);
    if (!rc) memcpy(all + row0 * K, w, (size_t)rows[i] * K * 2);
    rb_free(w);
  }
  if (!rc) rc = device_upload(m, &ss->w, all, total * (size_t)K * 2);
  ss->w_owned = !rc;
  rb_free(all);
  return rc;
}

/* Each step's weights, by op kind; the caches, and the attention workspace. */
static int bind_weights(RtModel *m, RtSafetensors *f, RbBuf *err) {
  size_t ws_bytes = 0;
  for (int i = 0; i < m->p->nsteps; i++) {
    const RtPlanStep *ps = &m->p->steps[i];
    StepState *ss = &m->st[i];
    int rc = RB_OK;
    char name[512];
    uint16_t *h = NULL;
    switch (ps->op) {
    case IR_EMBED: {
      const CgOp *op = &m->p->kernels[ps->kernels.main].kernel.op;
      int64_t shape[2] = {op->vocab, op->dim};
      cg_dense_name(name, sizeof name, ps->weights[0]);
      rc = load_f16(m, f, name, 2, shape, 1.0f, 0, &h);
      if (!rc) rc = device_upload(m, &ss->table, h, (size_t)op->vocab * op->dim * 2);
      break;
    }
    case IR_RMSNORM: {
      int64_t shape[1] = {ps->width[0]};
      cg_dense_name(name, sizeof name, ps->weights[0]);
      rc = load_f16(m, f, name, 1, shape, 0, 1.0f, &h);
      if (!rc) rc = device_upload(m, &ss->norm, h, (size_t)ps->width[0] * 2);
      if (!rc && ss->fused_into >= 0) ss->norm_host = h, h = NULL; /* the linear folds it in */
      break;
    }
    case IR_LINEAR:
    case IR_LINEAR_ADD:
    case IR_LINEAR_SWIGLU:
      rc = ps->paths ? bind_linear(m, i, f, err) : bind_dense(m, i, f, m->val[ps->in[0]].width, err);
      break;
    case IR_ATTENTION: {
      const RtPlanKernel *pk = &m->p->kernels[ps->kernels.main];
      const CgOp *op = &pk->kernel.op;
      size_t bytes = (size_t)op->kv_heads * op->max_ctx * op->head_dim * 2;
      rc = rt_program_alloc(m->prog, &ss->kc, bytes) || rt_program_alloc(m->prog, &ss->vc, bytes) ? RB_EINTERNAL : RB_OK;
      m->total_bytes += 2 * bytes;
      size_t ws = cg_attention_ws_bytes(op, &pk->geometry);
      if (ws > ws_bytes) ws_bytes = ws;
      break;
    }
    default: break;
    }
    rb_free(h);
    if (rc) return rc;
  }
  if (ws_bytes) { /* the kernels keep its counters zero after the first launch */
    if (rt_program_alloc(m->prog, &m->attn_ws, ws_bytes) || rt_program_fill(m->prog, m->attn_ws, 0, ws_bytes) ||
        rt_program_sync(m->prog)) /* the memset is on the legacy stream, the model on its own */
      return RB_EINTERNAL;
    m->total_bytes += ws_bytes;
  }
  return RB_OK;
}

/* ---- fused rmsnorms ---- */

/* Pair each quantized linear whose decode buckets fold in an rmsnorm with that norm's step. */
static int pair_norms(RtModel *m, RbBuf *err) {
  for (int i = 0; i < m->p->nsteps; i++) m->st[i].norm_step = m->st[i].fused_into = -1;
  for (int j = 0; j < m->p->nsteps; j++) {
    int norm, rc = rt_linear_norm_step(m->p, j, &norm, err);
    if (rc) return rc;
    if (norm >= 0) m->st[j].norm_step = norm, m->st[norm].fused_into = j;
  }
  return RB_OK;
}

/* ---- activations ---- */

/* A buffer of at least `bytes` for a new value: a free one, or a new one. */
static int take_buf(RtModel *m, size_t bytes) {
  int best = -1;
  for (int i = 0; i < m->nbuf; i++)
    if (!m->buf[i].refs && m->buf[i].bytes >= bytes && (best < 0 || m->buf[i].bytes < m->buf[best].bytes)) best = i;
  if (best >= 0) return best;
  if (m->nbuf == MAX_BUFS || rt_program_alloc(m->prog, &m->buf[m->nbuf].p, bytes)) return -1;
  m->buf[m->nbuf].bytes = bytes;
  m->total_bytes += bytes;
  return m->nbuf++;
}

/* Give every value a view, reusing a buffer once its last reader has run.
 * Outputs are placed before the step's inputs are released, so no kernel
 * writes over what it reads. */
static int plan_buffers(RtModel *m, RbBuf *err) {
  const RtPlan *p = m->p;
  for (int v = 0; v < p->nvalues; v++) m->val[v].last = -1;
  for (int i = 0; i < p->nsteps; i++)
    for (int j = 0; j < p->steps[i].nin; j++) m->val[p->steps[i].in[j]].last = i;
  if (p->ret >= 0) m->val[p->ret].last = p->nsteps; /* the output outlives the steps */
  for (int i = 0; i < p->nsteps; i++) /* a linear folding in its rmsnorm reads the norm's input */
    if (m->st[i].norm_step >= 0) {
      Val *x = &m->val[p->steps[m->st[i].norm_step].in[0]];
      if (x->last < i) x->last = i;
    }
  m->val[0].width = 1; /* the token ids: read from m->tokens */
  for (int i = 0; i < p->nsteps; i++) {
    const RtPlanStep *ps = &p->steps[i];
    int ld = 0, f32 = ps->nout == 1 && ps->out[0] == p->ret && p->ret_f32;
    for (int j = 0; j < ps->nout; j++) ld += ps->width[j];
    int b = take_buf(m, (size_t)m->o.max_tokens * ld * (f32 ? 4 : 2));
    if (b < 0) {
      rb_buf_printf(err, "out of device memory for activations");
      return RB_EINTERNAL;
    }
    for (int j = 0, col = 0; j < ps->nout; col += ps->width[j++]) {
      Val *v = &m->val[ps->out[j]];
      v->buf = b, v->col = col, v->ld = ld, v->width = ps->width[j], v->f32 = f32;
      m->buf[b].refs++;
    }
    for (int j = 0; j < ps->nin; j++) {
      Val *v = &m->val[ps->in[j]];
      if (ps->in[j] != 0 && v->last == i && --m->buf[v->buf].refs < 0) m->buf[v->buf].refs = 0;
    }
  }
  return RB_OK;
}

static RtDevPtr view(const RtModel *m, int v) {
  const Val *x = &m->val[v];
  return v == 0 ? m->tokens : m->buf[x->buf].p + (RtDevPtr)x->col * (x->f32 ? 4 : 2);
}

/* The kernels take dense rows: a view must span its whole buffer row. */
static int contiguous(const RtModel *m, int v) { return v == 0 || m->val[v].ld == m->val[v].width; }

/* ---- running ---- */

/* ---- running: one launcher per op kind ---- */

/* Launch a plan kernel of step i on the model's stream. */
static int launch(RtModel *m, int kernel, int n, CgArgv *v) {
  return rt_program_launch(m->prog, kernel, n, v->v, m->stream);
}

typedef int (*StepRun)(RtModel *m, int i, int T);

static int run_embed(RtModel *m, int i, int T) {
  const RtPlanStep *ps = &m->p->steps[i];
  CgEmbedArgs a = {view(m, ps->out[0]), m->tokens, m->st[i].table, T};
  CgArgv v;
  cg_embed_argv(&a, &v);
  return launch(m, ps->kernels.main, T, &v);
}

static int run_rmsnorm(RtModel *m, int i, int T) {
  const RtPlanStep *ps = &m->p->steps[i];
  if (m->st[i].fused_into >= 0 && rt_linear_prenorm(m->p, m->st[i].fused_into, T)) return RB_OK; /* the linear's */
  CgRmsnormArgs a = {view(m, ps->out[0]), view(m, ps->in[0]), m->st[i].norm, T};
  CgArgv v;
  cg_rmsnorm_argv(&a, &v);
  return launch(m, ps->kernels.main, T, &v);
}

/* q, k and v may be column slices of one fused buffer: the kernels take their strides. */
static int run_attention(RtModel *m, int i, int T) {
  const RtPlanStep *ps = &m->p->steps[i];
  StepState *ss = &m->st[i];
  int ldq = m->val[ps->in[0]].ld;
  CgRopeKvArgs r = {view(m, ps->in[0]), ldq, view(m, ps->in[1]), m->val[ps->in[1]].ld, view(m, ps->in[2]),
                    m->val[ps->in[2]].ld, ss->kc, ss->vc, m->pos, T};
  CgAttentionArgs a = {view(m, ps->out[0]), r.q, ldq, ss->kc, ss->vc, m->pos, T, m->attn_ws};
  CgArgv vr, va;
  cg_rope_kv_argv(&r, &vr);
  cg_attention_argv(&a, &va);
  return launch(m, ps->kernels.rope, T, &vr) || launch(m, ps->kernels.main, T, &va) ? RB_EINTERNAL : RB_OK;
}

static int run_swiglu(RtModel *m, int i, int T) {
  const RtPlanStep *ps = &m->p->steps[i];
  const Val *g = &m->val[ps->in[0]], *u = &m->val[ps->in[1]];
  if (g->buf != u->buf || u->col != g->col + g->width)
    return fail(m, RB_EUSER, "step %d (swiglu, IR line %d) needs gate and up side by side in one buffer", i,
                ps->line);
  CgSwigluArgs a = {view(m, ps->out[0]), view(m, ps->in[0]), g->ld, T};
  CgArgv v;
  cg_swiglu_argv(&a, &v);
  return launch(m, ps->kernels.main, T, &v);
}

static int run_add(RtModel *m, int i, int T) {
  const RtPlanStep *ps = &m->p->steps[i];
  CgAddArgs a = {view(m, ps->out[0]), view(m, ps->in[0]), view(m, ps->in[1]), T * ps->width[0]};
  CgArgv v;
  cg_add_argv(&a, &v);
  return launch(m, ps->kernels.main, a.n, &v);
}

/* A dense linear: cuBLAS on a GPU, the device's own elsewhere (the host's). */
static int dense(RtModel *m, int M, int N, int K, RtDevPtr x, RtDevPtr w, RtDevPtr y, int ldy, int f32, int add) {
  if (m->blas) return rt_blas_linear(m->blas, M, N, K, x, w, y, ldy, f32, add);
  return rt_program_dense(m->prog, M, N, K, x, w, y, ldy, f32, add);
}

/* Quantized linears run their generated kernels; dense ones run on cuBLAS
 * or the host's dense linear (a dense swiglu then multiplies gate and up
 * with its product kernel). */
static int run_linear(RtModel *m, int i, int T) {
  const RtPlanStep *ps = &m->p->steps[i];
  StepState *ss = &m->st[i];
  RtDevPtr y = view(m, ps->out[0]), x = view(m, ps->in[0]);
  if (ss->norm_step >= 0 && rt_linear_prenorm(m->p, i, T)) x = view(m, m->p->steps[ss->norm_step].in[0]);
  int add = ps->op == IR_LINEAR_ADD;
  RtDevPtr res = add ? view(m, ps->in[1]) : 0;
  if (ps->paths) return rt_linear_run(m->prog, ss->lin, T, y, x, res, m->stream, &m->lin);
  int K = m->val[ps->in[0]].width, N = m->val[ps->out[0]].ld, f32 = m->val[ps->out[0]].f32;
  if (ps->op == IR_LINEAR_SWIGLU) {
    int F = ps->width[0], ld = 2 * F;
    if (dense(m, T, 2 * F, K, x, ss->w, m->scratch, ld, 0, 0)) return RB_EINTERNAL;
    CgSwigluArgs a = {y, m->scratch, ld, T};
    CgArgv v;
    cg_swiglu_argv(&a, &v);
    return launch(m, ps->kernels.main, T, &v);
  }
  if (add && y != res && rt_program_copy(m->prog, y, res, (size_t)T * N * 2, m->stream)) return RB_EINTERNAL;
  return dense(m, T, N, K, x, ss->w, y, N, f32, add);
}

/* The launcher of each op kind (IR_NOP and ops the fusion pass removes have none). */
static const StepRun step_run[IR_NOP] = {
    [IR_EMBED] = run_embed,         [IR_RMSNORM] = run_rmsnorm, [IR_ATTENTION] = run_attention,
    [IR_SWIGLU] = run_swiglu,       [IR_ADD] = run_add,         [IR_LINEAR] = run_linear,
    [IR_LINEAR_ADD] = run_linear,   [IR_LINEAR_SWIGLU] = run_linear,
};

/* Which ops read their inputs with a stride (column slices of a fused output). */
static int reads_slices(IrOp op) { return op == IR_ATTENTION || op == IR_SWIGLU; }

static int run_steps(RtModel *m, int T) {
  for (int i = 0; i < m->p->nsteps; i++) {
    const RtPlanStep *ps = &m->p->steps[i];
    const char *name = ir_ops[ps->op].name;
    for (int j = 0; j < ps->nin && !reads_slices(ps->op); j++)
      if (!contiguous(m, ps->in[j]))
        return fail(m, RB_EUSER, "step %d (%s, IR line %d) reads a column slice; the executor needs whole rows", i,
                    name, ps->line);
    StepRun run = step_run[ps->op];
    if (!run) return fail(m, RB_EUSER, "step %d (%s, IR line %d): the executor has no launcher for it", i, name, ps->line);
    m->error[0] = 0;
    int rc = run(m, i, T);
    if (rc && !m->error[0])
      return fail(m, RB_EINTERNAL, "step %d (%s, IR line %d) failed: %s", i, name, ps->line, rt_program_error(m->prog));
    if (rc) return rc;
  }
  return RB_OK;
}

int rt_model_forward(RtModel *m, const int32_t *tokens, int T, int pos0) {
  if (T < 1 || T > m->o.max_tokens || pos0 < 0 || pos0 + T > m->max_ctx)
    return fail(m, RB_EUSER, "a forward of %d tokens at position %d exceeds the limits (%d tokens, context %d)", T,
                pos0, m->o.max_tokens, m->max_ctx);
  /* These copies are synchronous, and the model's stream is ordered after them. */
  if (rt_program_upload(m->prog, m->tokens, tokens, (size_t)T * 4) || rt_program_upload(m->prog, m->pos, &pos0, 4))
    return RB_EINTERNAL;
  m->T = T;
  return run_steps(m, T);
}

int rt_model_decode(RtModel *m, int32_t token, int pos) {
  if (pos < 0 || pos >= m->max_ctx)
    return fail(m, RB_EUSER, "decode position %d is beyond the context of %d", pos, m->max_ctx);
  if (rt_program_upload(m->prog, m->tokens, &token, 4) || rt_program_upload(m->prog, m->pos, &pos, 4))
    return RB_EINTERNAL;
  m->T = 1;
  if (!m->gpu) return run_steps(m, 1); /* no graphs off a GPU: the steps themselves */
  if (!m->decode) {
    if (rt_capture_begin(m->gpu, m->stream)) return RB_EINTERNAL;
    int rc = run_steps(m, 1);
    RtGraph *g = NULL;
    if (rt_capture_end(m->gpu, m->stream, &g) || rc) {
      rt_graph_destroy(m->gpu, g);
      return RB_EINTERNAL;
    }
    m->decode = g;
  }
  return rt_graph_launch(m->gpu, m->decode, m->stream);
}

int rt_model_decode_replay(RtModel *m, int n) {
  if (!m->gpu) { /* the step again, on the token and position the last decode left in memory */
    for (int i = 0; i < n; i++)
      if (run_steps(m, 1)) return RB_EINTERNAL;
    return RB_OK;
  }
  if (!m->decode) return RB_EUSER;
  for (int i = 0; i < n; i++)
    if (rt_graph_launch(m->gpu, m->decode, m->stream)) return RB_EINTERNAL;
  return RB_OK;
}

int rt_model_sync(RtModel *m) { return rt_program_sync(m->prog); }

int rt_model_logits(RtModel *m, int row0, int n, float *out) {
  int r = m->p->ret;
  if (r < 0 || row0 < 0 || row0 + n > m->T) return RB_EUSER;
  const Val *v = &m->val[r];
  if (rt_program_sync(m->prog)) return RB_EINTERNAL;
  size_t width = (size_t)v->width, elem = v->f32 ? 4 : 2;
  if (v->f32 && v->ld == v->width)
    return rt_program_download(m->prog, out, view(m, r) + (RtDevPtr)row0 * v->ld * 4, (size_t)n * width * 4);
  uint16_t *tmp = rb_malloc((size_t)n * v->ld * elem);
  if (!tmp) return RB_EINTERNAL;
  int rc = rt_program_download(m->prog, tmp, m->buf[v->buf].p + (RtDevPtr)row0 * v->ld * elem, (size_t)n * v->ld * elem);
  for (int i = 0; !rc && i < n; i++)
    for (size_t j = 0; j < width; j++) {
      size_t at = (size_t)i * v->ld + v->col + j;
      if (v->f32) memcpy(&out[(size_t)i * width + j], (char *)tmp + at * 4, 4);
      else out[(size_t)i * width + j] = rb_f32_from_f16(tmp[at]);
    }
  rb_free(tmp);
  return rc;
}

/* ---- evaluation: the NLL of a window, on the device ---- */

/* The window runs in prefill chunks; after each, the NLL kernel scores the
 * chunk's logits where cuBLAS wrote them, against the next ids of the window
 * (uploaded once), into one device row per position. One copy of T-1 floats
 * comes back per window, and the host sums them in row order in double. */
int rt_model_nll(RtModel *m, const int32_t *tokens, int T, double *nll_sum, float *row_nll) {
  const RtPlan *p = m->p;
  int r = p->ret, kernel = -1;
  for (int i = 0; i < p->nsteps; i++)
    if (p->steps[i].nout == 1 && p->steps[i].out[0] == r) kernel = p->steps[i].kernels.nll;
  if (r < 0 || kernel < 0 || !m->val[r].f32)
    return fail(m, RB_EUSER, "the plan has no nll kernel for its returned logits (they must be f32; a plan made "
                             "before the nll kernel needs rabitc again)");
  if (T < 2 || T > m->max_ctx)
    return fail(m, RB_EUSER, "a window of %d tokens is outside 2..%d (the context)", T, m->max_ctx);
  for (int i = 0; i < T; i++)
    if (tokens[i] < 0 || tokens[i] >= m->vocab)
      return fail(m, RB_EUSER, "token %d of the window is %d, outside the vocabulary of %d", i, tokens[i], m->vocab);
  size_t bytes = (size_t)m->max_ctx * 4;
  if (!m->nll_ids && (rt_program_alloc(m->prog, &m->nll_ids, bytes) || rt_program_alloc(m->prog, &m->nll_rows, bytes) ||
                      !(m->nll_host = rb_malloc(bytes))))
    return fail(m, RB_EINTERNAL, "out of memory for the nll buffers: %s", rt_program_error(m->prog));
  if (rt_program_upload(m->prog, m->nll_ids, tokens, (size_t)T * 4))
    return fail(m, RB_EINTERNAL, "uploading the window: %s", rt_program_error(m->prog));
  for (int at = 0; at < T - 1; at += m->o.max_tokens) {
    int n = T - at < m->o.max_tokens ? T - at : m->o.max_tokens;
    int rc = rt_model_forward(m, tokens + at, n, at);
    if (rc) return rc;
    /* Row at+j predicts id at+j+1: the last row of the window predicts nothing. */
    CgNllArgs a = {m->nll_rows + (RtDevPtr)at * 4, view(m, r), m->nll_ids + (RtDevPtr)(at + 1) * 4, m->val[r].ld,
                   at + n < T ? n : n - 1};
    CgArgv v;
    cg_nll_argv(&a, &v);
    if (launch(m, kernel, a.T, &v)) return fail(m, RB_EINTERNAL, "the nll kernel failed: %s", rt_program_error(m->prog));
  }
  float *rows = row_nll ? row_nll : m->nll_host;
  if (rt_program_sync(m->prog) || rt_program_download(m->prog, rows, m->nll_rows, (size_t)(T - 1) * 4))
    return fail(m, RB_EINTERNAL, "reading the nll rows: %s", rt_program_error(m->prog));
  double sum = 0;
  for (int i = 0; i < T - 1; i++) sum += rows[i];
  if (!isfinite(sum)) return fail(m, RB_EINTERNAL, "the window's NLL is not finite (%g)", sum);
  *nll_sum = sum;
  return RB_OK;
}

/* ---- open / close ---- */

int rt_model_open(RtProgram *pr, const char *weights, const RtModelOptions *o, RtModel **out, RbBuf *err) {
  RtModel *m = rb_calloc(1, sizeof *m);
  if (!m) return RB_EINTERNAL;
  m->prog = pr;
  m->p = rt_program_plan(pr);
  m->gpu = rt_program_gpu(pr);
  m->o = *o;
  if (!m->o.max_tokens) m->o.max_tokens = 512;
  m->rng = o->seed ? o->seed : 0x9E3779B97F4A7C15ull;
  m->max_ctx = 1 << 30;
  int need_blas = 0, scratch_cols = 0;
  for (int i = 0; i < m->p->nsteps; i++) {
    const RtPlanStep *ps = &m->p->steps[i];
    int linear = ps->op == IR_LINEAR || ps->op == IR_LINEAR_ADD || ps->op == IR_LINEAR_SWIGLU;
    if (ps->op == IR_ATTENTION && m->p->kernels[ps->kernels.main].kernel.op.max_ctx < m->max_ctx)
      m->max_ctx = m->p->kernels[ps->kernels.main].kernel.op.max_ctx;
    if (linear && !ps->paths && m->gpu) need_blas = 1; /* the host has its own dense linear */
    if (ps->op == IR_LINEAR_SWIGLU && !ps->paths && 2 * ps->width[0] > scratch_cols) scratch_cols = 2 * ps->width[0];
    if (ps->out[0] == m->p->ret) m->vocab = ps->width[0];
  }
  if (m->max_ctx == 1 << 30) m->max_ctx = m->o.max_tokens;
  /* Prefill buckets under the dequant strategy multiply on cuBLAS; a swiglu's
   * gate|up lands in the scratch the dense swiglu uses. */
  size_t w_bytes = 0, gu_bytes = 0;
  rt_linear_scratch_need(m->p, m->o.max_tokens, &w_bytes, &gu_bytes);
  if (w_bytes) need_blas = 1;
  if (gu_bytes / 2 / (size_t)m->o.max_tokens > (size_t)scratch_cols) scratch_cols = (int)(gu_bytes / 2 / (size_t)m->o.max_tokens);
  RtSafetensors *f = NULL;
  int rc = RB_EINTERNAL;
  m->val = rb_calloc((size_t)m->p->nvalues + 1, sizeof *m->val);
  m->st = rb_calloc((size_t)m->p->nsteps + 1, sizeof *m->st);
  if (!m->val || !m->st) goto fail;
  /* The file first: a wrong tensor is reported before any device memory is taken. */
  if (!o->random && ((rc = rt_st_open(weights, &f, err)) || (rc = rt_weights_check(m->p, f, weights, err)))) goto fail;
  if (m->gpu && (rc = rt_stream_create(m->gpu, &m->stream))) goto fail; /* the host runs on the caller's thread */
  if (need_blas && (rc = rt_blas_open(m->gpu, m->stream, &m->blas, err))) goto fail;
  if ((rc = rt_program_alloc(m->prog, &m->tokens, (size_t)m->o.max_tokens * 4)) ||
      (rc = rt_program_alloc(m->prog, &m->pos, 4)))
    goto fail;
  if (scratch_cols && (rc = rt_program_alloc(m->prog, &m->scratch, (size_t)m->o.max_tokens * scratch_cols * 2))) goto fail;
  if (w_bytes) {
    if ((rc = rt_program_alloc(m->prog, &m->lin.w, w_bytes))) goto fail;
    m->lin = (RtLinearScratch){m->blas, m->lin.w, m->scratch, w_bytes, (size_t)m->o.max_tokens * scratch_cols * 2};
    m->total_bytes += w_bytes;
  }
  if ((rc = pair_norms(m, err)) || (rc = plan_buffers(m, err))) goto fail;
  if ((rc = bind_weights(m, f, err))) goto fail;
  rt_st_close(f);
  m->total_bytes += m->weight_bytes;
  *out = m;
  return RB_OK;
fail:
  rt_st_close(f);
  rt_model_close(m);
  return rc ? rc : RB_EINTERNAL;
}

void rt_model_close(RtModel *m) {
  if (!m) return;
  if (m->prog) rt_program_sync(m->prog);
  if (m->gpu) rt_graph_destroy(m->gpu, m->decode);
  for (int i = 0; m->st && i < m->p->nsteps; i++) {
    StepState *ss = &m->st[i];
    rt_linear_free(m->prog, ss->lin);
    if (ss->w_owned) rt_program_free(m->prog, ss->w);
    if (ss->table) rt_program_free(m->prog, ss->table);
    if (ss->norm) rt_program_free(m->prog, ss->norm);
    rb_free(ss->norm_host);
    if (ss->kc) rt_program_free(m->prog, ss->kc);
    if (ss->vc) rt_program_free(m->prog, ss->vc);
  }
  for (int i = 0; i < m->nbuf; i++) rt_program_free(m->prog, m->buf[i].p);
  if (m->tokens) rt_program_free(m->prog, m->tokens);
  if (m->pos) rt_program_free(m->prog, m->pos);
  if (m->attn_ws) rt_program_free(m->prog, m->attn_ws);
  if (m->scratch) rt_program_free(m->prog, m->scratch);
  if (m->lin.w) rt_program_free(m->prog, m->lin.w);
  if (m->nll_ids) rt_program_free(m->prog, m->nll_ids);
  if (m->nll_rows) rt_program_free(m->prog, m->nll_rows);
  rb_free(m->nll_host);
  rt_blas_close(m->blas);
  if (m->stream) rt_stream_destroy(m->gpu, m->stream);
  rb_free(m->val);
  rb_free(m->st);
  rb_free(m->pool);
  for (int i = 0; i < m->nscaled; i++) rb_free(m->scaled[i].h);
  rb_free(m);
}

int rt_model_vocab(const RtModel *m) { return m->vocab; }
int rt_model_max_ctx(const RtModel *m) { return m->max_ctx; }
int rt_model_max_tokens(const RtModel *m) { return m->o.max_tokens; }
size_t rt_model_weight_bytes(const RtModel *m) { return m->weight_bytes; }
size_t rt_model_total_bytes(const RtModel *m) { return m->total_bytes; }
