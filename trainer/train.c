/* train.c: the training loop of `rabit train`: token shards in, batches of
 * random windows, the compiled step (qat.c) under warm-up and cosine decay,
 * validation, atomic checkpoints and resume, the NaN stop, the loss curve,
 * and the export to the packed format at the end. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trainer/trainer.h"

/* ==== data ==== */

/* splitmix64: the batch sampler's generator; its one word of state is the
 * data position a checkpoint saves. */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The *.shard files of dir, sorted (so the stream does not depend on readdir's order). */
static int list_shards(const char *dir, char ***out, int *n, RbBuf *err) {
  DIR *d = opendir(dir);
  *out = NULL, *n = 0;
  if (!d) {
    rb_buf_printf(err, "%s: cannot open the shard directory", dir);
    return RB_EUSER;
  }
  int cap = 0, rc = RB_OK;
  struct dirent *e;
  while ((e = readdir(d)) && !rc) {
    size_t len = strlen(e->d_name);
    if (len < 7 || strcmp(e->d_name + len - 6, ".shard")) continue;
    if (*n == cap) {
      cap = cap ? 2 * cap : 16;
      char **nv = rb_realloc(*out, (size_t)cap * sizeof *nv);
      if (!nv) {
        rc = RB_EINTERNAL;
        break;
      }
      *out = nv;
    }
    size_t pl = strlen(dir) + len + 2;
    char *p = rb_malloc(pl);
    if (!p) {
      rc = RB_EINTERNAL;
      break;
    }
    snprintf(p, pl, "%s/%s", dir, e->d_name);
    (*out)[(*n)++] = p;
  }
  closedir(d);
  if (!rc && !*n) {
    rb_buf_printf(err, "%s: no .shard files (make them with rabit data prepare)", dir);
    rc = RB_EUSER;
  }
  if (!rc) qsort(*out, (size_t)*n, sizeof **out, by_name);
  return rc;
}

static void free_list(char **v, int n) {
  for (int i = 0; i < n; i++) rb_free(v[i]);
  rb_free(v);
}

/* The held-out texts' hashes: a training shard made from one of them is refused. */
static int eval_hashes(const char *dir, unsigned char (**out)[32], int *n, RbBuf *err) {
  *out = NULL, *n = 0;
  if (!dir) return RB_OK;
  char **paths;
  int np, rc = list_shards(dir, &paths, &np, err);
  if (rc) return rc;
  *out = rb_calloc((size_t)np, sizeof **out);
  if (!*out) rc = RB_EINTERNAL;
  for (int i = 0; i < np && !rc; i++) {
    TrShard s;
    if ((rc = tr_shard_read(paths[i], &s, err))) break;
    memcpy((*out)[(*n)++], s.source_sha256, 32);
    tr_shard_free(&s);
  }
  free_list(paths, np);
  return rc;
}

int tr_train_data_load(const char *dir, const char *eval_dir, TrTrainData *d, RbBuf *err) {
  memset(d, 0, sizeof *d);
  char **paths = NULL;
  int np = 0, nh = 0;
  unsigned char(*held)[32] = NULL;
  int rc = eval_hashes(eval_dir, &held, &nh, err);
  if (!rc) rc = list_shards(dir, &paths, &np, err);
  for (int i = 0; i < np && !rc; i++) {
    TrShard s;
    if ((rc = tr_shard_read(paths[i], &s, err))) break;
    rc = tr_shard_check_trainable(&s, paths[i], NULL, err);
    for (int h = 0; h < nh && !rc; h++) rc = tr_shard_check_trainable(&s, paths[i], held[h], err);
    if (!rc && d->vocab && s.vocab != d->vocab) {
      rb_buf_printf(err, "%s: made with a vocabulary of %u ids, the other shards with %u", paths[i], s.vocab, d->vocab);
      rc = RB_EUSER;
    }
    if (!rc) {
      int32_t *nt = rb_realloc(d->tokens, (size_t)(d->ntokens + s.ntokens) * sizeof *nt);
      if (!nt) rc = RB_EINTERNAL;
      else {
        memcpy(nt + d->ntokens, s.tokens, (size_t)s.ntokens * sizeof *nt);
        d->tokens = nt, d->ntokens += s.ntokens, d->vocab = s.vocab, d->nshards++;
      }
    }
    tr_shard_free(&s);
  }
  free_list(paths, np);
  rb_free(held);
  if (rc) tr_train_data_free(d);
  return rc;
}

void tr_train_data_free(TrTrainData *d) {
  rb_free(d->tokens);
  memset(d, 0, sizeof *d);
}

void tr_train_batch(const TrTrainData *d, int batch, int seq, uint64_t *rng, int32_t *out) {
  uint64_t span = d->ntokens - (uint64_t)seq + 1; /* window starts; the caller checks ntokens >= seq */
  for (int b = 0; b < batch; b++) {
    uint64_t start = rng_next(rng) % span;
    memcpy(out + (size_t)b * seq, d->tokens + start, (size_t)seq * sizeof *out);
  }
}

double tr_lr_scale(int step, int steps, int warmup) {
  double warm = warmup > 0 ? (step + 1.0) / warmup : 1.0;
  if (warm > 1.0) warm = 1.0;
  double frac = steps > 0 ? (double)step / steps : 1.0;
  if (frac > 1.0) frac = 1.0;
  double s = warm * 0.5 * (1.0 + cos(3.14159265358979323846 * frac));
  return s < 0.02 ? 0.02 : s;
}

/* ==== the loop ==== */

#define CKPT_FILE "checkpoint.safetensors"
#define EXPORT_FILE "model.safetensors"
#define CURVE_FILE "loss.svg"
#define BEST_FILE "best.safetensors"

typedef struct {
  const TrTrainOptions *o;
  RtGpu *gpu;
  TrStep *st;
  TrTrainData data;
  TrEvalData eval;
  int steps;
  uint64_t rng;
  int step;            /* steps done */
  TrCkptPoint *hist;
  int nhist, caphist;
  /* host copies of the state regions */
  void *region[TR_NREGION];
  char path_ckpt[1024], path_export[1024], path_curve[1024], path_best[1024];
  double best_val; /* the lowest validation loss so far (its model is in path_best), or INFINITY */
  int best_step;
  uint32_t *bits_scratch; /* the export's bits of one standard-QAT weight */
} Run;

static void progress(const Run *r, TrTrainProgress *p) {
  if (r->o->progress) r->o->progress(r->o->ctx, p);
}

static int add_point(Run *r, double train, double val) {
  if (r->nhist == r->caphist) {
    int cap = r->caphist ? 2 * r->caphist : 256;
    TrCkptPoint *h = rb_realloc(r->hist, (size_t)cap * sizeof *h);
    if (!h) return RB_EINTERNAL;
    r->hist = h, r->caphist = cap;
  }
  uint64_t tok = (uint64_t)r->step * r->o->step.batch * r->o->step.seq;
  r->hist[r->nhist++] = (TrCkptPoint){(uint64_t)r->step, tok, train, val};
  return RB_OK;
}

/* The state regions to host, all of them (a checkpoint) or the parameters alone (an export). */
static int download_regions(Run *r, int params_only) {
  for (int i = 0; i < TR_NREGION; i++) {
    if (params_only && i != TR_REGION_PARAMS) continue;
    if (!r->region[i] && !(r->region[i] = rb_malloc(tr_step_region_bytes(r->st, (TrRegion)i) + 4)))
      return RB_EINTERNAL;
    int rc = tr_step_region(r->st, (TrRegion)i, r->region[i], 0);
    if (rc) return rc;
  }
  return RB_OK;
}

/* Weight i's tensors in the downloaded regions: each TrCkptPart's host pointer and shape, rank 2
 * but for standard QAT's latents and their momentum, (k, N, K). */
typedef struct {
  const float *p[TR_CKPT_NPART];
  int rank[TR_CKPT_NPART];
  int64_t shape[TR_CKPT_NPART][3];
} Parts;

static size_t parts_count(const Parts *w, int p) {
  size_t n = 1;
  for (int d = 0; d < w->rank[p]; d++) n *= (size_t)w->shape[p][d];
  return n;
}

static void weight_parts(const Run *r, int i, Parts *w) {
  int N, K, k, nlat = tr_step_latents(r->st, i);
  size_t w_off, s_off, nW;
  tr_step_weight(r->st, i, &N, &K, &k);
  const float **part = w->p;
  tr_step_weight_offsets(r->st, i, &w_off, &s_off, &nW);
  const float *P = r->region[TR_REGION_PARAMS], *M = r->region[TR_REGION_MUON];
  const float *AM = r->region[TR_REGION_ADAM_M], *AV = r->region[TR_REGION_ADAM_V];
  size_t kn = (size_t)k * N;
  /* an export downloads the parameters alone: the optimizer's parts are then NULL */
  part[TR_CKPT_W] = P + w_off, part[TR_CKPT_G] = P + nW + s_off, part[TR_CKPT_H] = P + nW + s_off + kn;
  part[TR_CKPT_W_MOM] = M ? M + w_off : NULL;
  part[TR_CKPT_G_M] = AM ? AM + s_off : NULL, part[TR_CKPT_H_M] = AM ? AM + s_off + kn : NULL;
  part[TR_CKPT_G_V] = AV ? AV + s_off : NULL, part[TR_CKPT_H_V] = AV ? AV + s_off + kn : NULL;
  for (int p = 0; p < TR_CKPT_NPART; p++) {
    int isw = p == TR_CKPT_W || p == TR_CKPT_W_MOM, isg = p == TR_CKPT_G || p == TR_CKPT_G_M || p == TR_CKPT_G_V;
    int64_t *sh = w->shape[p];
    if (isw && nlat > 1) w->rank[p] = 3, sh[0] = nlat, sh[1] = N, sh[2] = K;
    else w->rank[p] = 2, sh[0] = isw ? N : k, sh[1] = isw ? K : isg ? N : K;
  }
}

static void fill_options(const Run *r, TrCkptOptions *co) {
  const TrTrainOptions *o = r->o;
  *co = (TrCkptOptions){.method = o->method, .paths = o->step.fe.paths, .lr_w = o->lr_w, .lr_s = o->lr_s,
                        .gamma = o->step.gamma, .seed = o->seed, .tokens = o->tokens, .batch = o->step.batch,
                        .seq = o->step.seq, .ir = o->step.ir, .weights = o->step.weights, .data = o->data};
}

static int save_checkpoint(Run *r, RbBuf *err) {
  int rc = download_regions(r, 0), nw = tr_step_nweights(r->st);
  TrCkptTensor *t = rb_calloc((size_t)nw * TR_CKPT_NPART, sizeof *t);
  char(*names)[600] = rb_calloc((size_t)nw * TR_CKPT_NPART, sizeof *names);
  if (!rc && (!t || !names)) rc = RB_EINTERNAL;
  for (int i = 0; i < nw && !rc; i++) {
    Parts w;
    weight_parts(r, i, &w);
    const char *base = tr_step_weight(r->st, i, NULL, NULL, NULL);
    for (int p = 0; p < TR_CKPT_NPART; p++) {
      int j = i * TR_CKPT_NPART + p;
      tr_ckpt_name(names[j], sizeof names[j], base, (TrCkptPart)p);
      t[j] = (TrCkptTensor){.name = names[j], .dtype = RT_F32, .rank = w.rank[p],
                            .shape = {w.shape[p][0], w.shape[p][1], w.shape[p][2]}, .data = w.p[p]};
    }
  }
  if (!rc) {
    TrCkpt c = {.step = (uint64_t)r->step,
                .tokens_seen = (uint64_t)r->step * r->o->step.batch * r->o->step.seq,
                .rng = &r->rng,
                .nrng = 1,
                .model = tr_step_model(r->st),
                .ir_hash = tr_step_ir_hash(r->st),
                .history = r->hist,
                .nhistory = r->nhist,
                .tensors = t,
                .ntensors = nw * TR_CKPT_NPART};
    fill_options(r, &c.opt);
    rc = tr_ckpt_write(r->path_ckpt, &c, err);
  }
  rb_free(t);
  rb_free(names);
  return rc;
}

/* Restore the state of r->path_ckpt: every tensor named and shaped as this run's weights. */
static int load_checkpoint(Run *r, RbBuf *err) {
  TrCkpt c;
  int rc = tr_ckpt_read(r->path_ckpt, &c, err);
  if (rc) return rc;
  const TrTrainOptions *o = r->o;
  if (c.opt.batch != o->step.batch || c.opt.seq != o->step.seq || c.nrng != 1 ||
      (c.ir_hash && strcmp(c.ir_hash, tr_step_ir_hash(r->st)))) {
    rb_buf_printf(err, "%s: made by a run with another IR or batch (batch %d x %d, this run %d x %d); "
                       "resume with the same options",
                  r->path_ckpt, c.opt.batch, c.opt.seq, o->step.batch, o->step.seq);
    tr_ckpt_free(&c);
    return RB_EUSER;
  }
  for (int i = 0; i < TR_NREGION && !rc; i++)
    if (!r->region[i] && !(r->region[i] = rb_malloc(tr_step_region_bytes(r->st, (TrRegion)i) + 4))) rc = RB_EINTERNAL;
  int nw = tr_step_nweights(r->st);
  for (int i = 0; i < nw && !rc; i++) {
    Parts w;
    weight_parts(r, i, &w);
    const char *base = tr_step_weight(r->st, i, NULL, NULL, NULL);
    for (int p = 0; p < TR_CKPT_NPART && !rc; p++) {
      char name[600];
      tr_ckpt_name(name, sizeof name, base, (TrCkptPart)p);
      const TrCkptTensor *t = tr_ckpt_find(&c, name);
      int same = t && t->dtype == RT_F32 && t->rank == w.rank[p];
      for (int d = 0; same && d < w.rank[p]; d++) same = t->shape[d] == w.shape[p][d];
      if (!same) {
        rb_buf_printf(err, "%s: %s '%s' of %zu F32 values in the shape this run's method (%s) holds", r->path_ckpt,
                      t ? "expected" : "no tensor", name, parts_count(&w, p), o->method);
        rc = RB_EUSER;
        break;
      }
      memcpy((void *)w.p[p], t->data, parts_count(&w, p) * 4);
    }
  }
  for (int i = 0; i < TR_NREGION && !rc; i++) rc = tr_step_region(r->st, (TrRegion)i, r->region[i], 1);
  if (!rc) {
    r->step = (int)c.step, r->rng = c.rng[0];
    r->nhist = 0;
    for (int i = 0; i < c.nhistory && !rc; i++)
      if (c.history[i].step <= c.step) {
        int s = r->step;
        r->step = (int)c.history[i].step;
        rc = add_point(r, c.history[i].train_loss, c.history[i].val_loss);
        r->step = s;
      }
  }
  tr_ckpt_free(&c);
  return rc;
}

/* Export callback: weight base's state from the downloaded regions. */
static int export_get(void *ctx, const char *base, int N, int K, int k, TrExportWeight *w, RbBuf *err) {
  Run *r = ctx;
  int nw = tr_step_nweights(r->st);
  for (int i = 0; i < nw; i++) {
    int n, kk, pk;
    if (strcmp(tr_step_weight(r->st, i, &n, &kk, &pk), base)) continue;
    if (n != N || kk != K || pk != k) break;
    Parts p;
    weight_parts(r, i, &p);
    *w = (TrExportWeight){p.p[TR_CKPT_W], p.p[TR_CKPT_G], p.p[TR_CKPT_H], NULL};
    if (tr_step_latents(r->st, i) > 1) { /* standard QAT: the signs are the latents' own */
      size_t words = (size_t)cg_packed_words(K), bytes = (size_t)k * N * words * 4;
      if (!(r->bits_scratch = rb_realloc(r->bits_scratch, bytes))) return RB_EINTERNAL;
      tr_sign_bits(p.p[TR_CKPT_W], N, K, k, r->bits_scratch);
      w->W = NULL, w->bits = r->bits_scratch;
    }
    return RB_OK;
  }
  rb_buf_printf(err, "the trainer has no state for '%s' (%d x %d, k = %d)", base, N, K, k);
  return RB_EUSER;
}

/* The student as it stands, packed into path. */
static int export_to(Run *r, const char *path, RbBuf *err) {
  int rc = download_regions(r, 1); /* export_get reads W, g and h only */
  uint64_t T = (uint64_t)r->o->step.batch * r->o->step.seq;
  TrExportOptions eo = {.ir = r->o->step.ir, .fe = r->o->step.fe, .weights = r->o->step.weights, .out = path,
                        .step = (uint64_t)r->step, .tokens = (uint64_t)r->step * T, .get = export_get, .ctx = r};
  return rc ? rc : tr_export(&eo, err);
}

/* Checkpoint choice on the validation windows (DESIGN.md): each validation better than all before
 * it exports the student to path_best, so the best model survives a later, worse one. */
static int keep_if_best(Run *r, double val, RbBuf *err) {
  if (!(val < r->best_val)) return RB_OK;
  r->best_val = val, r->best_step = r->step;
  return export_to(r, r->path_best, err);
}

static int write_curve(const Run *r, RbBuf *err) {
  TrCurvePoint *tp = rb_calloc((size_t)r->nhist + 1, sizeof *tp), *vp = rb_calloc((size_t)r->nhist + 1, sizeof *vp);
  int nt = 0, nv = 0, rc = RB_OK;
  if (!tp || !vp) rc = RB_EINTERNAL;
  for (int i = 0; i < r->nhist && !rc; i++) {
    if (isfinite(r->hist[i].train_loss)) tp[nt++] = (TrCurvePoint){(double)r->hist[i].step, r->hist[i].train_loss};
    if (isfinite(r->hist[i].val_loss)) vp[nv++] = (TrCurvePoint){(double)r->hist[i].step, r->hist[i].val_loss};
  }
  if (!rc) rc = tr_curve_svg(r->path_curve, tp, nt, vp, nv, tr_step_model(r->st), "step", err);
  rb_free(tp);
  rb_free(vp);
  return rc;
}

/* Validation: the student's mean NLL over the evaluation windows (TRAINING.md's even windows). */
static int validate(Run *r, double *val_loss, int *windows, RbBuf *err) {
  *val_loss = NAN, *windows = 0;
  if (!r->eval.nwindows) return RB_OK;
  return tr_step_eval(r->st, &r->eval, r->o->eval_windows, val_loss, windows, err);
}

/* The NaN test's hook: a NaN in the first weight's first row scale, before the step. */
static int poison(Run *r) {
  int N, k;
  tr_step_weight(r->st, 0, &N, NULL, &k);
  float *g = rb_malloc((size_t)k * N * sizeof *g);
  int rc = g ? tr_step_get(r->st, 0, TR_PART_G, g) : RB_EINTERNAL;
  if (!rc) {
    g[0] = NAN;
    rc = tr_step_set(r->st, 0, TR_PART_G, g);
  }
  rb_free(g);
  return rc;
}

/* The function-preserving initialization on calib_tokens of training windows, drawn with their own
 * generator so that the batches the run trains on do not depend on it. */
static int calibrate(Run *r, RbBuf *err) {
  const TrTrainOptions *o = r->o;
  int T = o->step.batch * o->step.seq;
  int batches = (int)(((o->calib_tokens ? o->calib_tokens : TR_CALIB_TOKENS) + (uint64_t)T - 1) / (uint64_t)T);
  int32_t *tok = rb_malloc((size_t)batches * T * sizeof *tok);
  if (!tok) return RB_EINTERNAL;
  uint64_t rng = o->seed ^ 0xC0FFEE5EEDull;
  for (int b = 0; b < batches; b++) tr_train_batch(&r->data, o->step.batch, o->step.seq, &rng, tok + (size_t)b * T);
  TrInitStats st;
  double t0 = rb_now_ms();
  int rc = tr_step_init_rabit(r->st, tok, batches, &o->init_opt, &st, err);
  rb_free(tok);
  if (!rc) {
    char line[256];
    snprintf(line, sizeof line,
             "initialization: calibrated on %llu tokens (FP cross-entropy %.4f), a = %g, b = %g, %d rounds, %.1f s",
             (unsigned long long)st.tokens, st.ce, o->init_opt.a, o->init_opt.b, o->init_opt.rounds,
             (rb_now_ms() - t0) / 1e3);
    progress(r, &(TrTrainProgress){.event = TR_EVENT_READY, .text = line});
  }
  return rc;
}

static void run_free(Run *r) {
  tr_step_close(r->st);
  if (r->gpu) rt_gpu_close(r->gpu);
  tr_train_data_free(&r->data);
  tr_eval_free(&r->eval);
  for (int i = 0; i < TR_NREGION; i++) rb_free(r->region[i]);
  rb_free(r->hist);
  rb_free(r->bits_scratch);
}

static int join(char *out, size_t n, const char *dir, const char *file, RbBuf *err) {
  if ((size_t)snprintf(out, n, "%s/%s", dir, file) >= n) {
    rb_buf_printf(err, "%s: the output path is too long", dir);
    return RB_EUSER;
  }
  return RB_OK;
}

int tr_train(const TrTrainOptions *o, TrTrainResult *res, RbBuf *err) {
  memset(res, 0, sizeof *res);
  Run r = {.o = o, .rng = o->seed ^ 0x5DEECE66Dull, .best_val = INFINITY};
  int rc = RB_OK;
  const char *out = o->out ? o->out : "."; /* only a --method ptq with export_path may leave it out */
  if ((rc = join(r.path_ckpt, sizeof r.path_ckpt, out, CKPT_FILE, err)) ||
      (rc = join(r.path_export, sizeof r.path_export, out, EXPORT_FILE, err)) ||
      (rc = join(r.path_curve, sizeof r.path_curve, out, CURVE_FILE, err)) ||
      (rc = join(r.path_best, sizeof r.path_best, out, BEST_FILE, err)))
    return rc;
  if (o->export_path && (size_t)snprintf(r.path_export, sizeof r.path_export, "%s", o->export_path) >= sizeof r.path_export) {
    rb_buf_printf(err, "%s: the output path is too long", o->export_path);
    return RB_EUSER;
  }
  if (o->out && rb_mkdir_p(o->out, 0755)) {
    rb_buf_printf(err, "%s: cannot create the output directory", o->out);
    return RB_EUSER;
  }
  rc = tr_train_data_load(o->data, o->eval_data, &r.data, err);
  if (!rc && o->eval_data) rc = tr_eval_open(o->eval_data, TR_EVAL_WINDOW, 0, &r.eval, err);
  int T = o->step.batch * o->step.seq;
  if (!rc && r.data.ntokens < (uint64_t)o->step.seq) {
    rb_buf_printf(err, "%s: %llu tokens, fewer than one sequence of %d", o->data, (unsigned long long)r.data.ntokens,
                  o->step.seq);
    rc = RB_EUSER;
  }
  r.steps = (int)(o->tokens / (uint64_t)T);
  int ptq = o->method && !strcmp(o->method, "ptq"); /* the initialization alone: evaluated and exported */
  if (!rc && r.steps < 1 && !ptq) {
    rb_buf_printf(err, "--tokens %llu is less than one step of %d x %d tokens", (unsigned long long)o->tokens,
                  o->step.batch, o->step.seq);
    rc = RB_EUSER;
  }
  if (!rc) rc = rt_gpu_open(&r.gpu, 0, err);
  TrStepOptions so = o->step;
  so.method = o->method && !strcmp(o->method, "standard") ? TR_METHOD_STANDARD : TR_METHOD_RABIT;
  if (r.eval.nwindows) so.eval_batch = TR_EVAL_BATCH, so.eval_seq = TR_EVAL_WINDOW;
  if (!rc) rc = tr_step_open(&r.st, r.gpu, &so, err);
  if (!rc && o->init && !strcmp(o->init, "rabit") && !o->resume) rc = calibrate(&r, err);
  if (!rc && o->resume) rc = load_checkpoint(&r, err);
  if (!rc && o->resume && !access(r.path_best, F_OK)) /* the best so far is the history's, already exported */
    for (int i = 0; i < r.nhist; i++)
      if (r.hist[i].val_loss < r.best_val) r.best_val = r.hist[i].val_loss, r.best_step = (int)r.hist[i].step;
  if (rc) {
    run_free(&r);
    return rc;
  }
  char line[256];
  snprintf(line, sizeof line, "%d trainable weights, %d steps of %d x %d tokens, %llu training tokens in %d shards%s",
           tr_step_nweights(r.st), r.steps, o->step.batch, o->step.seq, (unsigned long long)r.data.ntokens,
           r.data.nshards, o->resume ? (r.step ? ", resumed" : "") : "");
  progress(&r, &(TrTrainProgress){.event = TR_EVENT_READY, .text = line, .step = r.step, .steps = r.steps});
  int32_t *tok = rb_malloc((size_t)T * sizeof *tok);
  if (!tok) rc = RB_EINTERNAL;
  /* rates: over each progress interval, and steady state (after the first TR_STEADY_AFTER steps of this run) */
  double t0 = rb_now_ms(), t_line = t0, t_steady = 0, loss = NAN;
  int start = r.step, ran = 0, line_step = r.step;
  if (!rc && ptq) {
    double val = NAN;
    int windows = 0;
    r.steps = 0;
    if (!(rc = validate(&r, &val, &windows, err)) && r.eval.nwindows)
      progress(&r, &(TrTrainProgress){.event = TR_EVENT_EVAL, .val_ppl = exp(val), .val_loss = val, .windows = windows});
    if (!rc) rc = add_point(&r, NAN, val);
  }
  while (!rc && r.step < r.steps && !(o->max_steps && ran >= o->max_steps)) {
    tr_train_batch(&r.data, o->step.batch, o->step.seq, &r.rng, tok);
    if (o->test_nan_at_step == r.step + 1 && (rc = poison(&r))) break;
    double scale = tr_lr_scale(r.step, r.steps, o->warmup);
    TrStepHyper hp = {o->lr_w * scale, o->lr_s * scale, r.step + 1, 1};
    TrStepResult sr;
    if ((rc = tr_step_run(r.st, tok, &hp, &sr, err))) break;
    if (!isfinite(sr.loss) || !isfinite(sr.grad_norm)) {
      char what[700];
      tr_step_find_nonfinite(r.st, what, sizeof what);
      rb_buf_printf(err, "step %d: the %s is not finite (loss %g, gradient norm %g): %s; stopping. The last good "
                         "checkpoint, %s, is kept",
                    r.step + 1, isfinite(sr.loss) ? "gradient" : "loss", sr.loss, sr.grad_norm, what, r.path_ckpt);
      rc = RB_EUSER;
      break;
    }
    r.step++, ran++, loss = sr.loss;
    double val = NAN;
    int windows = 0;
    int last = r.step == r.steps || (o->max_steps && ran >= o->max_steps);
    if ((o->eval_every && r.step % o->eval_every == 0) || (last && r.eval.nwindows)) {
      if ((rc = validate(&r, &val, &windows, err))) break;
      progress(&r, &(TrTrainProgress){.event = TR_EVENT_EVAL, .step = r.step, .steps = r.steps, .val_ppl = exp(val),
                                      .val_loss = val, .windows = windows});
      if (!o->export_path && (rc = keep_if_best(&r, val, err))) break;
    }
    if ((rc = add_point(&r, sr.loss, val))) break;
    double now = rb_now_ms();
    if (ran == TR_STEADY_AFTER) t_steady = now;
    if (r.step % o->log_every == 0 || r.step == start + 1 || last) {
      double ms = now - t_line, tps = ms > 0 ? (double)(r.step - line_step) * T / (ms / 1000.0) : 0.0;
      progress(&r, &(TrTrainProgress){.event = TR_EVENT_STEP, .step = r.step, .steps = r.steps, .loss = sr.loss,
                                      .kl = sr.kl, .mse = sr.mse, .grad_norm = sr.grad_norm, .tok_per_s = tps,
                                      .eta_s = tps > 0 ? (double)(r.steps - r.step) * T / tps : 0.0});
      t_line = rb_now_ms(), line_step = r.step; /* evaluation and checkpoints below count in the next interval */
    }
    if ((o->ckpt_every && r.step % o->ckpt_every == 0) || last) {
      if ((rc = save_checkpoint(&r, err)) || (rc = write_curve(&r, err))) break;
      progress(&r, &(TrTrainProgress){.event = TR_EVENT_CHECKPOINT, .step = r.step, .steps = r.steps,
                                      .text = r.path_ckpt});
    }
    double all = rb_now_ms() - t0;
    res->tok_per_s = all > 0 ? (double)ran * T / (all / 1000.0) : 0.0;
    if (ran > TR_STEADY_AFTER && now > t_steady)
      res->tok_per_s_steady = (double)(ran - TR_STEADY_AFTER) * T / ((now - t_steady) / 1000.0);
  }
  rb_free(tok);
  if (!rc && r.step == r.steps) {
    rc = export_to(&r, r.path_export, err);
    snprintf(res->export_path, sizeof res->export_path, "%s", r.path_export);
  }
  if (isfinite(r.best_val)) {
    res->best_step = r.best_step, res->best_val_ppl = exp(r.best_val);
    snprintf(res->best_path, sizeof res->best_path, "%s", r.path_best);
  }
  res->steps = r.step, res->tokens = (uint64_t)r.step * T, res->loss = loss;
  run_free(&r);
  return rc;
}
