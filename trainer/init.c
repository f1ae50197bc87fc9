/* init.c: a training step's weights: the trainable ones (quantized linears'
 * latent W, scales g and h) and the frozen ones (embedding, norms, the
 * teacher's matrices), their layout in one allocation each, and the two
 * initializations: rabit quantize's fit, and the calibrated, function-
 * preserving one of DESIGN.md (a)-(c). */
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "trainer/step.h"

static int st_tensor(TrStep *s, const RtSafetensors *st, const char *base, const RtTensor **out,
                     RbBuf *err) {
  char name[600];
  if (cg_dense_name(name, sizeof name, base) < 0) {
    rb_buf_printf(err, "weight name '%s' is too long", base);
    return RB_EUSER;
  }
  const RtTensor *t = rt_st_find(st, name);
  if (!t) {
    rb_buf_printf(err, "%s: no tensor '%s', which the IR binds (training reads a full-precision file, as "
                       "`rabit import` writes)", s->o.weights, name);
    return RB_EUSER;
  }
  if (t->dtype != RT_F32 && t->dtype != RT_F16 && t->dtype != RT_BF16) {
    rb_buf_printf(err, "%s: '%s' is %s; training reads F32, F16 or BF16", s->o.weights, name, rt_dtype_name(t->dtype));
    return RB_EUSER;
  }
  *out = t;
  return RB_OK;
}

/* The tensor as floats, rb_malloc'ed. */
static float *to_f32(const RtTensor *t, size_t n) {
  float *f = rb_malloc(n * sizeof *f);
  for (size_t i = 0; f && i < n; i++) f[i] = rt_tensor_f32(t, i);
  return f;
}

/* Upload a frozen tensor: fp32 (norms) or bf16 (matrices). */
static int add_frozen(TrStep *s, const RtSafetensors *st, const char *base, int as_bf16, size_t want, RbBuf *err) {
  int idx;
  if (rb_map_get(&s->findex, base, &idx)) return RB_OK;
  const RtTensor *t;
  int rc = st_tensor(s, st, base, &t, err);
  if (rc) return rc;
  size_t n = rt_tensor_count(t);
  if (want && n != want) {
    rb_buf_printf(err, "%s: '%s.weight' has %zu elements; the IR needs %zu", s->o.weights, base, n, want);
    return RB_EUSER;
  }
  float *f = to_f32(t, n);
  if (!f) return RB_EINTERNAL;
  Frozen fr = {base, 0};
  rc = tr_dev_alloc(s, &fr.p, n * (as_bf16 ? 2 : 4));
  if (!rc && as_bf16) {
    uint16_t *b = (uint16_t *)f; /* in place: each bf16 is written after its float is read */
    for (size_t i = 0; i < n; i++) b[i] = rb_bf16_from_f32(f[i]);
  }
  if (!rc) rc = rt_memcpy_htod(s->gpu, fr.p, f, n * (as_bf16 ? 2 : 4));
  rb_free(f);
  if (rc) return rc;
  Frozen *nf = rb_realloc(s->frozen, (size_t)(s->nfrozen + 1) * sizeof *nf);
  if (!nf) return RB_EINTERNAL;
  s->frozen = nf;
  s->frozen[s->nfrozen] = fr;
  return rb_map_put(&s->findex, base, s->nfrozen++);
}

/* The initialization of the quantized weights: W the file's, (g, h) rabit quantize's fit in fp32. */
typedef struct {
  TrStep *s;
  float **W, *scales;
  float **row_w, **col_w; /* per weight the preconditioning of DESIGN (a), or NULL: greedy + rounds unweighted */
  int rounds;
  int next, rc;
  RbBuf err;
  pthread_mutex_t mu;
} InitPool;

static void *init_worker(void *arg) {
  InitPool *ip = arg;
  for (;;) {
    pthread_mutex_lock(&ip->mu);
    int i = ip->rc ? ip->s->nqw : ip->next++;
    pthread_mutex_unlock(&ip->mu);
    if (i >= ip->s->nqw) return NULL;
    const QWeight *q = &ip->s->qw[i];
    TrPtqOptions po = {.rounds = ip->rounds, .row_weight = ip->row_w ? ip->row_w[i] : NULL,
                       .col_weight = ip->col_w ? ip->col_w[i] : NULL};
    size_t words = (size_t)cg_packed_words(q->K);
    uint32_t *bits = rb_malloc((size_t)q->k * q->N * words * sizeof *bits);
    RbBuf e = {0};
    float *g = ip->scales + q->s_off, *h = g + (size_t)q->k * q->N;
    int rc = bits ? tr_ptq_linear(ip->W[i], q->N, q->K, q->k, &po, bits, g, h, NULL, &e) : RB_EINTERNAL;
    rb_free(bits);
    if (rc) {
      pthread_mutex_lock(&ip->mu);
      if (!ip->rc) {
        ip->rc = rc;
        rb_buf_printf(&ip->err, "%s: initializing '%s': %s", ip->s->o.weights, q->name, e.data ? e.data : "failed");
      }
      pthread_mutex_unlock(&ip->mu);
    }
    rb_buf_free(&e);
  }
}

static int add_qweight(TrStep *s, const char *name, int N, int K, int k, int line) {
  int idx;
  if (rb_map_get(&s->qindex, name, &idx)) return RB_OK;
  QWeight *nq = rb_realloc(s->qw, (size_t)(s->nqw + 1) * sizeof *nq);
  if (!nq) return RB_EINTERNAL;
  s->qw = nq;
  s->qw[s->nqw] = (QWeight){.name = name, .N = N, .K = K, .k = k, .line = line,
                            .nlat = s->o.method == TR_METHOD_STANDARD ? k : 1};
  return rb_map_put(&s->qindex, name, s->nqw++);
}

/* Walk the forward nodes: which weights train, which are frozen, and of what shape. */
int tr_collect_weights(TrStep *s, const RtSafetensors *st, RbBuf *err) {
  int rc = RB_OK;
  for (int i = 0; i < s->g->nnodes && !rc; i++) {
    const IrNode *n = &s->g->nodes[i];
    if (n->dead || !tr_is_forward_node(s, i)) continue;
    if (n->op == IR_EMBED) rc = add_frozen(s, st, n->weights[0], 1, (size_t)(n->ints[0] * n->ints[1]), err);
    else if (n->op == IR_RMSNORM)
      rc = add_frozen(s, st, n->weights[0], 0, (size_t)tr_width(&s->g->values[n->in[0]].type), err);
    else if (n->op == IR_LINEAR && !(n->attr_set & IR_BIT(IR_A_TIED))) {
      int K = tr_width(&s->g->values[n->in[0]].type), k = ir_node_paths(n);
      for (int w = 0; w < n->nweights && !rc; w++) {
        int N = (int)n->ints[w];
        rc = k ? add_qweight(s, n->weights[w], N, K, k, n->line)
               : add_frozen(s, st, n->weights[w], 1, (size_t)N * K, err);
      }
    }
  }
  if (!rc && !s->nqw) {
    rb_buf_printf(err, "%s: the IR quantizes no linear, so nothing would train", s->o.ir);
    rc = RB_EUSER;
  }
  return rc;
}

/* Shape groups in order of first appearance; each group's matrices contiguous in the W region. */
int tr_lay_out(TrStep *s) {
  size_t w = 0, sc = 0;
  for (int i = 0; i < s->nqw; i++) {
    QWeight *q = &s->qw[i];
    int gi = 0;
    while (gi < s->ngroups && (s->groups[gi].N != q->N || s->groups[gi].K != q->K)) gi++;
    if (gi == s->ngroups) {
      MuonGroup *ng = rb_realloc(s->groups, (size_t)(s->ngroups + 1) * sizeof *ng);
      if (!ng) return RB_EINTERNAL;
      s->groups = ng;
      s->groups[s->ngroups++] = (MuonGroup){q->N, q->K, 0, 0};
    }
    q->group = gi;
    s->groups[gi].count += q->nlat; /* Muon: one original matrix at a time, each W_p its own */
  }
  for (int gi = 0; gi < s->ngroups; gi++) {
    s->groups[gi].w_off = w;
    int seen = 0;
    for (int i = 0; i < s->nqw; i++)
      if (s->qw[i].group == gi) {
        s->qw[i].w_off = w + (size_t)seen * s->groups[gi].N * s->groups[gi].K;
        seen += s->qw[i].nlat;
      }
    w += (size_t)s->groups[gi].count * s->groups[gi].N * s->groups[gi].K;
  }
  for (int i = 0; i < s->nqw; i++) {
    s->qw[i].s_off = sc;
    sc += (size_t)s->qw[i].k * (s->qw[i].N + s->qw[i].K);
  }
  s->nW = w, s->nS = sc;
  return RB_OK;
}

/* Standard QAT's latents from the same starting point as RaBiT's: W_p = g_p B_p h_p with B_p the
 * coupled signs of the file's W under the fitted scales (DESIGN.md), uploaded as (k, N, K). */
static int init_standard(TrStep *s, const QWeight *q, const float *W, const float *scales, RbBuf *err) {
  size_t n = (size_t)q->N * q->K, words = (size_t)cg_packed_words(q->K);
  const float *g = scales + q->s_off, *h = g + (size_t)q->k * q->N;
  uint32_t *bits = rb_malloc((size_t)q->k * q->N * words * sizeof *bits);
  float *lat = rb_malloc((size_t)q->k * n * sizeof *lat);
  int rc = bits && lat ? tr_derive_bits(W, q->N, q->K, q->k, g, h, bits, NULL, err) : RB_EINTERNAL;
  for (int p = 0; !rc && p < q->k; p++)
    for (int r = 0; r < q->N; r++) {
      const uint32_t *wb = bits + ((size_t)p * q->N + r) * words;
      for (int c = 0; c < q->K; c++) {
        float gh = g[(size_t)p * q->N + r] * h[(size_t)p * q->K + c];
        lat[(size_t)p * n + (size_t)r * q->K + c] = (wb[c >> 5] >> (c & 31)) & 1u ? -gh : gh;
      }
    }
  if (!rc) rc = rt_memcpy_htod(s->gpu, s->params + (RtDevPtr)(q->w_off * 4), lat, (size_t)q->k * n * 4);
  rb_free(bits);
  rb_free(lat);
  return rc;
}

/* W from the file, (g, h) fitted on the CPU threads; the teacher's bf16 copies; all uploaded. */
int tr_init_weights(TrStep *s, const RtSafetensors *st, float **row_w, float **col_w, int rounds, RbBuf *err) {
  InitPool ip = {.s = s, .row_w = row_w, .col_w = col_w, .rounds = rounds};
  pthread_mutex_init(&ip.mu, NULL);
  ip.W = rb_calloc((size_t)s->nqw, sizeof *ip.W);
  ip.scales = rb_calloc(s->nS ? s->nS : 1, sizeof *ip.scales);
  int rc = ip.W && ip.scales ? RB_OK : RB_EINTERNAL;
  for (int i = 0; i < s->nqw && !rc; i++) {
    QWeight *q = &s->qw[i];
    const RtTensor *t;
    if ((rc = st_tensor(s, st, q->name, &t, err))) break;
    if (t->rank != 2 || t->shape[0] != q->N || t->shape[1] != q->K) {
      rb_buf_printf(err, "%s: '%s.weight' is not [%d, %d] as the IR (%s:%d) says", s->o.weights, q->name, q->N, q->K,
                    s->o.ir, q->line);
      rc = RB_EUSER;
      break;
    }
    if (!(ip.W[i] = to_f32(t, (size_t)q->N * q->K))) rc = RB_EINTERNAL;
  }
  if (!rc) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = s->o.threads > 0 ? s->o.threads : cpus < 1 ? 1 : cpus > 16 ? 16 : (int)cpus;
    if (nt > s->nqw) nt = s->nqw;
    pthread_t tid[16];
    int started = 0;
    for (; started < nt; started++)
      if (pthread_create(&tid[started], NULL, init_worker, &ip)) break;
    if (!started) init_worker(&ip);
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
    rc = ip.rc;
    if (rc && ip.err.data) rb_buf_puts(err, ip.err.data);
  }
  for (int i = 0; i < s->nqw && !rc; i++) {
    QWeight *q = &s->qw[i];
    size_t n = (size_t)q->N * q->K;
    uint16_t *b = rb_malloc(n * sizeof *b);
    if (!b) {
      rc = RB_EINTERNAL;
      break;
    }
    for (size_t j = 0; j < n; j++) b[j] = rb_bf16_from_f32(ip.W[i][j]);
    rc = rt_memcpy_htod(s->gpu, q->dense, b, n * 2);
    rb_free(b);
    if (!rc && q->nlat == 1) rc = rt_memcpy_htod(s->gpu, s->params + (RtDevPtr)(q->w_off * 4), ip.W[i], n * 4);
    else if (!rc) rc = init_standard(s, q, ip.W[i], ip.scales, err);
  }
  if (!rc) rc = rt_memcpy_htod(s->gpu, s->params + (RtDevPtr)(s->nW * 4), ip.scales, s->nS * 4);
  for (int i = 0; ip.W && i < s->nqw; i++) rb_free(ip.W[i]);
  rb_free(ip.W);
  rb_free(ip.scales);
  rb_buf_free(&ip.err);
  pthread_mutex_destroy(&ip.mu);
  return rc;
}

/* A strictly positive statistic's power: s^e, with s floored at 1e-8 of the weight's mean
 * statistic so that a dead channel keeps a finite, tiny weight. */
static float *stat_power(const double *sum, int n, double count, double e) {
  float *w = rb_malloc((size_t)n * sizeof *w);
  if (!w) return NULL;
  double mean = 0;
  for (int i = 0; i < n; i++) mean += sum[i] / count / n;
  double floor = mean > 0 ? 1e-8 * mean : 1e-30;
  for (int i = 0; i < n; i++) {
    double v = sum[i] / count;
    w[i] = (float)pow(v > floor ? v : floor, e);
  }
  return w;
}

int tr_step_init_rabit(TrStep *s, const int32_t *tokens, int batches, const TrInitOptions *io, TrInitStats *stats,
                       RbBuf *err) {
  if (batches < 1) {
    rb_buf_printf(err, "the calibration needs at least one batch");
    return RB_EUSER;
  }
  s->B = s->o.batch, s->S = s->o.seq, s->T = s->B * s->S, s->forward_only = 0;
  size_t calib = 0;
  for (int i = 0; i < s->nqw; i++) calib += (size_t)s->qw[i].N + s->qw[i].K;
  int rc = rt_memset8(s->gpu, s->calib_acc, 0, calib * 4);
  int32_t *tgt = rb_malloc((size_t)s->T * sizeof *tgt);
  if (!tgt) rc = RB_EINTERNAL;
  double ce = 0;
  s->calibrating = 1;
  for (int b = 0; !rc && b < batches; b++) {
    const int32_t *tok = tokens + (size_t)b * s->T;
    for (int t = 0; t < s->T; t++) tgt[t] = (t + 1) % s->S ? tok[t + 1] : -1; /* the next token in its sequence */
    rc = rt_memcpy_htod(s->gpu, s->tokens, tok, (size_t)s->T * 4);
    if (!rc) rc = rt_memcpy_htod(s->gpu, s->targets, tgt, (size_t)s->T * 4);
    if (!rc) rc = tr_step_body(s);
    float loss = 0;
    if (!rc) rc = rt_memcpy_dtoh(s->gpu, &loss, s->losses, 4);
    ce += loss / ((double)s->T - s->B); /* the rows' sum over the rows with a target */
  }
  s->calibrating = 0;
  rb_free(tgt);
  float *acc = rc ? NULL : rb_malloc(calib * sizeof *acc);
  if (!rc && !acc) rc = RB_EINTERNAL;
  if (!rc) rc = rt_memcpy_dtoh(s->gpu, acc, s->calib_acc, calib * 4);
  if (rc) {
    rb_free(acc);
    rb_buf_printf(err, "calibration: %s", rt_gpu_error(s->gpu) ? rt_gpu_error(s->gpu) : "a GPU call failed");
    return rc;
  }
  /* row weight s_out^a (N), column weight s_in^b (K), then the fit of ptq.c with T rounds */
  float **rw = rb_calloc((size_t)s->nqw, sizeof *rw), **cw = rb_calloc((size_t)s->nqw, sizeof *cw);
  double rows = (double)batches * s->T;
  for (int i = 0; i < s->nqw && rw && cw && !rc; i++) {
    const QWeight *q = &s->qw[i];
    double *sum = rb_malloc((size_t)(q->N + q->K) * sizeof *sum);
    if (!sum) {
      rc = RB_EINTERNAL;
      break;
    }
    for (int j = 0; j < q->N + q->K; j++) sum[j] = acc[q->calib_off + (size_t)j];
    rw[i] = stat_power(sum, q->N, rows, io->a);
    cw[i] = stat_power(sum + q->N, q->K, rows, io->b);
    if (!rw[i] || !cw[i]) rc = RB_EINTERNAL;
    rb_free(sum);
  }
  if (!rw || !cw) rc = RB_EINTERNAL;
  RtSafetensors *st = NULL;
  if (!rc) rc = rt_st_open(s->o.weights, &st, err);
  if (!rc) rc = tr_init_weights(s, st, rw, cw, io->rounds, err);
  rt_st_close(st);
  for (int i = 0; i < s->nqw; i++) {
    if (rw) rb_free(rw[i]);
    if (cw) rb_free(cw[i]);
  }
  rb_free(rw), rb_free(cw), rb_free(acc);
  if (stats) stats->ce = ce / batches, stats->tokens = (uint64_t)batches * s->T;
  return rc;
}

int tr_step_calib_sums(TrStep *s, int i, float *sum_dy, float *sum_x) {
  if (i < 0 || i >= s->nqw) return RB_EUSER;
  const QWeight *q = &s->qw[i];
  RtDevPtr a = s->calib_acc + (RtDevPtr)(q->calib_off * 4);
  int rc = rt_memcpy_dtoh(s->gpu, sum_dy, a, (size_t)q->N * 4);
  return rc ? rc : rt_memcpy_dtoh(s->gpu, sum_x, a + (RtDevPtr)(q->N * 4), (size_t)q->K * 4);
}
