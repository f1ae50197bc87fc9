/* model.c: the executor. It walks a plan's steps in order over device
 * buffers: each step launches its generated kernels (or cuBLAS for dense
 * linears), activations live in buffers reused once their last reader ran,
 * and every attention step owns a KV cache. A decode step (one token) is
 * captured once as a CUDA graph and replayed; the position lives in device
 * memory, so the same graph serves every position. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "runtime/rabit.h"
#include "runtime/runtime.h"
#include "runtime/formats/formats.h"

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
  RabitLinear *lin;       /* quantized linear */
  RtDevPtr w;             /* dense linear: (Ntot, K) fp16, or the tied table */
  int w_owned;
  RtDevPtr table, norm;   /* embed, rmsnorm */
  RtDevPtr kc, vc;        /* attention */
  int heads, kv_heads, head_dim;
} StepState;

struct RtModel {
  RabitSession *s;
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
  size_t weight_bytes, total_bytes;
  RtGraph *decode;
  uint64_t rng;
  float *pool; /* random weights: N(0,1) samples reused cyclically, so that a
                  7B-shaped model fills in seconds rather than minutes */
};

#define POOL_SIZE (1u << 20)

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
  if (rt_mem_alloc(m->gpu, d, bytes) || rt_memcpy_htod(m->gpu, *d, h, bytes)) return RB_EINTERNAL;
  m->weight_bytes += bytes;
  return RB_OK;
}

/* Tensor `name` of the file as n fp16 values (F16 as is, F32 and BF16
 * converted), with its shape checked; random weights draw N(0, scale^2), or
 * the constant `fill` when scale is 0. Returns an rb_malloc'ed array. */
static int load_f16(RtModel *m, RtSafetensors *f, const char *path, const char *name, int rank,
                    const int64_t *shape, float scale, float fill, uint16_t **out, RbBuf *err) {
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)shape[i];
  uint16_t *h = rb_malloc(n * 2);
  if (!h) return RB_EINTERNAL;
  *out = h;
  if (!f) {
    if (!m->pool && scale) {
      if (!(m->pool = rb_malloc(POOL_SIZE * sizeof *m->pool))) return RB_EINTERNAL;
      for (size_t i = 0; i < POOL_SIZE; i++) m->pool[i] = randn(m);
    }
    size_t at = next_rand(m) % POOL_SIZE;
    uint16_t cfill = rb_f16_from_f32(fill);
    for (size_t i = 0; i < n; i++, at = at + 1 == POOL_SIZE ? 0 : at + 1)
      h[i] = scale ? rb_f16_from_f32(scale * m->pool[at]) : cfill;
    return RB_OK;
  }
  const RtTensor *t = rt_st_find(f, name);
  if (!t) {
    rb_buf_printf(err, "%s: no tensor '%s'", path, name);
    return RB_EUSER;
  }
  int ok = t->rank == rank;
  for (int i = 0; ok && i < rank; i++) ok = t->shape[i] == shape[i];
  if (!ok) {
    rb_buf_printf(err, "%s: tensor '%s' has shape [", path, name);
    for (int i = 0; i < t->rank; i++) rb_buf_printf(err, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    rb_buf_puts(err, "], the model needs [");
    for (int i = 0; i < rank; i++) rb_buf_printf(err, "%s%lld", i ? ", " : "", (long long)shape[i]);
    rb_buf_puts(err, "]");
    return RB_EUSER;
  }
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
    default:
      rb_buf_printf(err, "%s: tensor '%s' is %s; the model needs F16, BF16 or F32", path, name,
                    rt_dtype_name(t->dtype));
      return RB_EUSER;
    }
  }
  return RB_OK;
}

/* The packed tensors <base>.bits, .g, .h of one quantized segment. */
static int load_packed(RtModel *m, RtSafetensors *f, const char *path, const char *base, int k, int N, int K,
                       uint32_t **bits, uint16_t **g, uint16_t **h, RbBuf *err) {
  int W = (K + 31) / 32;
  char name[512];
  *bits = rb_malloc((size_t)k * N * W * 4);
  if (!*bits) return RB_EINTERNAL;
  if (!f) {
    for (size_t i = 0; i < (size_t)k * N * W; i++) (*bits)[i] = (uint32_t)next_rand(m);
    if (K % 32) /* pad columns must be 0 */
      for (size_t r = 0; r < (size_t)k * N; r++) (*bits)[r * W + W - 1] &= (1u << (K % 32)) - 1;
  } else {
    snprintf(name, sizeof name, "%s.bits", base);
    const RtTensor *t = rt_st_find(f, name);
    if (!t) {
      snprintf(name, sizeof name, "%s.weight", base);
      if (rt_st_find(f, name))
        rb_buf_printf(err, "%s: '%s' is not quantized (it has .weight, not .bits); run 'rabit quantize --paths %d' "
                           "on the file, or run the model with --fp16", path, base, k);
      else rb_buf_printf(err, "%s: no tensor '%s.bits'", path, base);
      return RB_EUSER;
    }
    if (t->dtype != RT_I32 || t->rank != 3 || t->shape[0] != k || t->shape[1] != N || t->shape[2] != W) {
      rb_buf_printf(err, "%s: '%s' must be I32 [%d, %d, %d] (paths, N, ceil(K/32))", path, name, k, N, W);
      return RB_EUSER;
    }
    memcpy(*bits, t->data, (size_t)k * N * W * 4);
  }
  snprintf(name, sizeof name, "%s.g", base);
  int64_t gs[2] = {k, N}, hs[2] = {k, K};
  int rc = load_f16(m, f, path, name, 2, gs, 0, 1.0f / sqrtf((float)K * k), g, err);
  snprintf(name, sizeof name, "%s.h", base);
  if (!rc) rc = load_f16(m, f, path, name, 2, hs, 0, 1.0f, h, err);
  return rc;
}

static int bind_linear(RtModel *m, int step, RtSafetensors *f, const char *path, RbBuf *err) {
  const RtPlanStep *ps = &m->p->steps[step];
  StepState *ss = &m->st[step];
  int nseg, N[4], K, k;
  const CgSpec *sp = &m->p->kernels[ps->kernel[0]].spec;
  nseg = sp->nseg, K = sp->K, k = sp->paths;
  memcpy(N, sp->N, sizeof N);
  uint32_t *bits[4] = {0};
  uint16_t *g[4] = {0}, *h[4] = {0};
  int rc = RB_OK;
  for (int i = 0; i < nseg && !rc; i++) rc = load_packed(m, f, path, ps->weights[i], k, N[i], K, &bits[i], &g[i], &h[i], err);
  char e[512] = "";
  if (!rc && rabit_linear_bind(m->s, step, (const uint32_t *const *)bits, (const uint16_t *const *)g,
                               (const uint16_t *const *)h, &ss->lin, e, sizeof e)) {
    rb_buf_printf(err, "%s", e);
    rc = RB_EINTERNAL;
  }
  for (int i = 0; i < nseg; i++) {
    if (!rc) m->weight_bytes += (size_t)k * (N[i] * ((K + 31) / 32) * 4 + (N[i] + K) * 2);
    rb_free(bits[i]), rb_free(g[i]), rb_free(h[i]);
  }
  return rc;
}

/* A dense linear: the segments' fp16 weights stacked into one (Ntot, K) matrix. */
static int bind_dense(RtModel *m, int step, RtSafetensors *f, const char *path, int K, RbBuf *err) {
  const RtPlanStep *ps = &m->p->steps[step];
  StepState *ss = &m->st[step];
  if (ps->tied) {
    for (int j = 0; j < step; j++)
      if (!strcmp(m->p->steps[j].op, "embed") && !strcmp(m->p->steps[j].weights[0], ps->weights[0])) {
        ss->w = m->st[j].table;
        return RB_OK;
      }
    rb_buf_printf(err, "tied weight '%s' has no embedding step", ps->weights[0]);
    return RB_EUSER;
  }
  int swiglu = !strcmp(ps->op, "linear_swiglu");
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
    snprintf(name, sizeof name, "%s.weight", ps->weights[i]);
    int64_t shape[2] = {rows[i], K};
    uint16_t *w = NULL;
    rc = load_f16(m, f, path, name, 2, shape, 1.0f / sqrtf((float)K), 0, &w, err);
    if (!rc) memcpy(all + row0 * K, w, (size_t)rows[i] * K * 2);
    rb_free(w);
  }
  if (!rc) rc = device_upload(m, &ss->w, all, total * (size_t)K * 2);
  ss->w_owned = !rc;
  rb_free(all);
  return rc;
}

static int bind_weights(RtModel *m, RtSafetensors *f, const char *path, RbBuf *err) {
  for (int i = 0; i < m->p->nsteps; i++) {
    const RtPlanStep *ps = &m->p->steps[i];
    StepState *ss = &m->st[i];
    int rc = RB_OK;
    char name[512];
    uint16_t *h = NULL;
    if (!strcmp(ps->op, "embed")) {
      const CgSpec *sp = &m->p->kernels[ps->kernel[0]].spec;
      int64_t shape[2] = {sp->vocab, sp->dim};
      snprintf(name, sizeof name, "%s.weight", ps->weights[0]);
      rc = load_f16(m, f, path, name, 2, shape, 1.0f, 0, &h, err);
      if (!rc) rc = device_upload(m, &ss->table, h, (size_t)sp->vocab * sp->dim * 2);
    } else if (!strcmp(ps->op, "rmsnorm")) {
      int64_t shape[1] = {ps->width[0]};
      snprintf(name, sizeof name, "%s.weight", ps->weights[0]);
      rc = load_f16(m, f, path, name, 1, shape, 0, 1.0f, &h, err);
      if (!rc) rc = device_upload(m, &ss->norm, h, (size_t)ps->width[0] * 2);
    } else if (!strncmp(ps->op, "linear", 6)) {
      rc = ps->paths ? bind_linear(m, i, f, path, err) : bind_dense(m, i, f, path, m->val[ps->in[0]].width, err);
    } else if (!strcmp(ps->op, "attention")) {
      const CgSpec *sp = &m->p->kernels[ps->kernel[0]].spec;
      ss->heads = sp->heads, ss->kv_heads = sp->kv_heads, ss->head_dim = sp->head_dim;
      size_t bytes = (size_t)sp->kv_heads * sp->max_ctx * sp->head_dim * 2;
      rc = rt_mem_alloc(m->gpu, &ss->kc, bytes) || rt_mem_alloc(m->gpu, &ss->vc, bytes) ? RB_EINTERNAL : RB_OK;
      m->total_bytes += 2 * bytes;
    }
    rb_free(h);
    if (rc) return rc;
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
  if (m->nbuf == MAX_BUFS || rt_mem_alloc(m->gpu, &m->buf[m->nbuf].p, bytes)) return -1;
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

static int launch(RtModel *m, int step, int j, int n, void **args) {
  return rt_session_launch(m->s, m->p->steps[step].kernel[j], n, args, m->stream);
}

static int run_step(RtModel *m, int i, int T) {
  const RtPlanStep *ps = &m->p->steps[i];
  StepState *ss = &m->st[i];
  RtDevPtr y = view(m, ps->out[0]);
  RtDevPtr x = view(m, ps->in[0]);
  const char *op = ps->op;
  for (int j = 0; j < ps->nin; j++)
    if (!contiguous(m, ps->in[j]) && strcmp(op, "attention") && strcmp(op, "swiglu")) {
      fprintf(stderr, "rabit: step %d (%s, line %d) reads a column slice; the executor needs whole rows\n", i, op,
              ps->line);
      return RB_EUSER;
    }
  if (!strcmp(op, "embed")) {
    void *a[] = {&y, &m->tokens, &ss->table, &T};
    return launch(m, i, 0, T, a);
  }
  if (!strcmp(op, "rmsnorm")) {
    void *a[] = {&y, &x, &ss->norm, &T};
    return launch(m, i, 0, T, a);
  }
  if (!strcmp(op, "attention")) {
    RtDevPtr q = x, k = view(m, ps->in[1]), v = view(m, ps->in[2]);
    int ldq = m->val[ps->in[0]].ld, ldk = m->val[ps->in[1]].ld, ldv = m->val[ps->in[2]].ld;
    void *r[] = {&q, &ldq, &k, &ldk, &v, &ldv, &ss->kc, &ss->vc, &m->pos, &T};
    void *a[] = {&y, &q, &ldq, &ss->kc, &ss->vc, &m->pos, &T};
    return launch(m, i, 0, T, r) || launch(m, i, 1, T, a) ? RB_EINTERNAL : RB_OK;
  }
  if (!strcmp(op, "swiglu")) {
    const Val *g = &m->val[ps->in[0]], *u = &m->val[ps->in[1]];
    if (g->buf != u->buf || u->col != g->col + g->width) {
      fprintf(stderr, "rabit: step %d: swiglu needs gate and up side by side in one buffer\n", i);
      return RB_EUSER;
    }
    int ld = g->ld;
    void *a[] = {&y, &x, &ld, &T};
    return launch(m, i, 0, T, a);
  }
  if (!strcmp(op, "add")) {
    RtDevPtr b = view(m, ps->in[1]);
    int n = T * ps->width[0];
    void *a[] = {&y, &x, &b, &n};
    return launch(m, i, 0, n, a);
  }
  /* linears */
  int add = !strcmp(op, "linear_add"), swiglu = !strcmp(op, "linear_swiglu");
  RtDevPtr res = add ? view(m, ps->in[1]) : 0;
  if (ps->paths) return rabit_linear_run(m->s, ss->lin, T, y, x, res, m->stream);
  int K = m->val[ps->in[0]].width, N = m->val[ps->out[0]].ld, f32 = m->val[ps->out[0]].f32;
  if (swiglu) {
    int F = ps->width[0], ld = 2 * F;
    if (rt_blas_linear(m->blas, T, 2 * F, K, x, ss->w, m->scratch, ld, 0, 0)) return RB_EINTERNAL;
    void *a[] = {&y, &m->scratch, &ld, &T};
    return launch(m, i, 0, T, a);
  }
  if (add && rt_memcpy_dtod(m->gpu, y, res, (size_t)T * N * 2, m->stream)) return RB_EINTERNAL;
  return rt_blas_linear(m->blas, T, N, K, x, ss->w, y, N, f32, add);
}

static int run_steps(RtModel *m, int T) {
  for (int i = 0; i < m->p->nsteps; i++)
    if (run_step(m, i, T)) {
      fprintf(stderr, "rabit: step %d (%s, IR line %d) failed\n", i, m->p->steps[i].op, m->p->steps[i].line);
      return RB_EINTERNAL;
    }
  return RB_OK;
}

int rt_model_forward(RtModel *m, const int32_t *tokens, int T, int pos0) {
  if (T < 1 || T > m->o.max_tokens || pos0 < 0 || pos0 + T > m->max_ctx) {
    fprintf(stderr, "rabit: forward of %d tokens at position %d exceeds the limits (%d tokens, context %d)\n", T,
            pos0, m->o.max_tokens, m->max_ctx);
    return RB_EUSER;
  }
  /* These copies are synchronous, and the model's stream is ordered after them. */
  if (rt_memcpy_htod(m->gpu, m->tokens, tokens, (size_t)T * 4) || rt_memcpy_htod(m->gpu, m->pos, &pos0, 4))
    return RB_EINTERNAL;
  m->T = T;
  return run_steps(m, T);
}

int rt_model_decode(RtModel *m, int32_t token, int pos) {
  if (pos < 0 || pos >= m->max_ctx) {
    fprintf(stderr, "rabit: decode position %d is beyond the context of %d\n", pos, m->max_ctx);
    return RB_EUSER;
  }
  if (rt_memcpy_htod(m->gpu, m->tokens, &token, 4) || rt_memcpy_htod(m->gpu, m->pos, &pos, 4)) return RB_EINTERNAL;
  m->T = 1;
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
  if (!m->decode) return RB_EUSER;
  for (int i = 0; i < n; i++)
    if (rt_graph_launch(m->gpu, m->decode, m->stream)) return RB_EINTERNAL;
  return RB_OK;
}

int rt_model_sync(RtModel *m) { return rt_sync(m->gpu); }

int rt_model_logits(RtModel *m, int row0, int n, float *out) {
  int r = m->p->ret;
  if (r < 0 || row0 < 0 || row0 + n > m->T) return RB_EUSER;
  const Val *v = &m->val[r];
  if (rt_sync(m->gpu)) return RB_EINTERNAL;
  size_t width = (size_t)v->width, elem = v->f32 ? 4 : 2;
  if (v->f32 && v->ld == v->width)
    return rt_memcpy_dtoh(m->gpu, out, view(m, r) + (RtDevPtr)row0 * v->ld * 4, (size_t)n * width * 4);
  uint16_t *tmp = rb_malloc((size_t)n * v->ld * elem);
  if (!tmp) return RB_EINTERNAL;
  int rc = rt_memcpy_dtoh(m->gpu, tmp, m->buf[v->buf].p + (RtDevPtr)row0 * v->ld * elem, (size_t)n * v->ld * elem);
  for (int i = 0; !rc && i < n; i++)
    for (size_t j = 0; j < width; j++) {
      size_t at = (size_t)i * v->ld + v->col + j;
      if (v->f32) memcpy(&out[(size_t)i * width + j], (char *)tmp + at * 4, 4);
      else out[(size_t)i * width + j] = rb_f32_from_f16(tmp[at]);
    }
  rb_free(tmp);
  return rc;
}

/* ---- open / close ---- */

int rt_model_open(RabitSession *s, const char *weights, const RtModelOptions *o, RtModel **out, RbBuf *err) {
  RtModel *m = rb_calloc(1, sizeof *m);
  if (!m) return RB_EINTERNAL;
  m->s = s;
  m->p = rt_session_plan(s);
  m->gpu = rt_session_gpu(s);
  m->o = *o;
  if (!m->o.max_tokens) m->o.max_tokens = 512;
  m->rng = o->seed ? o->seed : 0x9E3779B97F4A7C15ull;
  m->max_ctx = 1 << 30;
  int need_blas = 0, scratch_cols = 0;
  for (int i = 0; i < m->p->nsteps; i++) {
    const RtPlanStep *ps = &m->p->steps[i];
    if (!strcmp(ps->op, "attention") && m->p->kernels[ps->kernel[0]].spec.max_ctx < m->max_ctx)
      m->max_ctx = m->p->kernels[ps->kernel[0]].spec.max_ctx;
    if (!strncmp(ps->op, "linear", 6) && !ps->paths) need_blas = 1;
    if (!strcmp(ps->op, "linear_swiglu") && !ps->paths && 2 * ps->width[0] > scratch_cols) scratch_cols = 2 * ps->width[0];
    if (ps->out[0] == m->p->ret) m->vocab = ps->width[0];
  }
  if (m->max_ctx == 1 << 30) m->max_ctx = m->o.max_tokens;
  RtSafetensors *f = NULL;
  int rc = RB_EINTERNAL;
  m->val = rb_calloc((size_t)m->p->nvalues + 1, sizeof *m->val);
  m->st = rb_calloc((size_t)m->p->nsteps + 1, sizeof *m->st);
  if (!m->val || !m->st) goto fail;
  if ((rc = rt_stream_create(m->gpu, &m->stream))) goto fail;
  if (need_blas && (rc = rt_blas_open(m->gpu, m->stream, &m->blas, err))) goto fail;
  if ((rc = rt_mem_alloc(m->gpu, &m->tokens, (size_t)m->o.max_tokens * 4)) || (rc = rt_mem_alloc(m->gpu, &m->pos, 4)))
    goto fail;
  if (scratch_cols && (rc = rt_mem_alloc(m->gpu, &m->scratch, (size_t)m->o.max_tokens * scratch_cols * 2))) goto fail;
  if ((rc = plan_buffers(m, err))) goto fail;
  if (!o->random && (rc = rt_st_open(weights, &f, err))) goto fail;
  if ((rc = bind_weights(m, f, weights, err))) goto fail;
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
  if (m->gpu) rt_sync(m->gpu);
  rt_graph_destroy(m->gpu, m->decode);
  for (int i = 0; m->st && i < m->p->nsteps; i++) {
    StepState *ss = &m->st[i];
    rabit_linear_free(m->s, ss->lin);
    if (ss->w_owned) rt_mem_free(m->gpu, ss->w);
    if (ss->table) rt_mem_free(m->gpu, ss->table);
    if (ss->norm) rt_mem_free(m->gpu, ss->norm);
    if (ss->kc) rt_mem_free(m->gpu, ss->kc);
    if (ss->vc) rt_mem_free(m->gpu, ss->vc);
  }
  for (int i = 0; i < m->nbuf; i++) rt_mem_free(m->gpu, m->buf[i].p);
  if (m->tokens) rt_mem_free(m->gpu, m->tokens);
  if (m->pos) rt_mem_free(m->gpu, m->pos);
  if (m->scratch) rt_mem_free(m->gpu, m->scratch);
  rt_blas_close(m->blas);
  if (m->stream) rt_stream_destroy(m->gpu, m->stream);
  rb_free(m->val);
  rb_free(m->st);
  rb_free(m->pool);
  rb_free(m);
}

int rt_model_vocab(const RtModel *m) { return m->vocab; }
int rt_model_max_ctx(const RtModel *m) { return m->max_ctx; }
int rt_model_max_tokens(const RtModel *m) { return m->o.max_tokens; }
size_t rt_model_weight_bytes(const RtModel *m) { return m->weight_bytes; }
size_t rt_model_total_bytes(const RtModel *m) { return m->total_bytes; }
