/* quantize.c: post-training quantization of a whole weight file, driven by the
 * IR: each weight bound by a linear with quant = rabit(paths = k) is fitted by
 * residual SVID (ptq.c) with that op's k, on a pool of threads, and written in
 * the canonical packed format (codegen/packed.c); every other tensor is copied. */
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "runtime/formats/formats.h"
#include "runtime/runtime.h"
#include "trainer/trainer.h"

#define MAX_SKIP 64
#define MAX_DIM (1 << 30) /* tr_ptq_linear takes int dimensions */

/* One weight to quantize and, once a worker is done with it, its result. */
typedef struct {
  const RtTensor *t; /* <base>.weight in the input */
  int input;         /* t's index in the input: jobs run and are written in this order */
  const char *base;  /* the IR's name, in the graph's arena */
  int N, K, k;
  int done, rc;
  void *part[CG_PACKED_NPART]; /* bits (k, N, ceil(K/32)) I32; g (k, N), h (k, K) F16 */
  double w2, ms;               /* ||W||^2 and the fit's time */
  TrPtqStats stats;
  RbBuf err;
} Job;

/* The work queue: workers take jobs in order, the writer waits for each in turn. */
typedef struct {
  Job *jobs;
  int njobs, next, stop, rounds;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} Pool;

/* The skip list: compiled regexes and whether each matched anything. */
typedef struct {
  regex_t re[MAX_SKIP];
  const char *src[MAX_SKIP]; /* into copy */
  int used[MAX_SKIP];
  int n;
  char *copy;
} SkipList;

/* Everything one call holds, freed by quant_free. */
typedef struct {
  const TrQuantOptions *o;
  RtCompiled c;
  int compiled;
  RtSafetensors *st;
  SkipList skip;
  Job *jobs;
  int njobs, nbound; /* weights to fit; weights the IR quantizes, skipped ones included */
  Pool pool;
  int pool_init;
  pthread_t *tids;
  int nthreads;
} Quant;

/* Fit one job; fills its result or err. Runs on a worker thread. */
static void run_job(Job *j, int rounds) {
  double t0 = rb_now_ms();
  size_t nk = (size_t)j->N * j->K, ng = (size_t)j->k * j->N, nh = (size_t)j->k * j->K;
  float *W = rb_malloc(nk * sizeof *W), *g = rb_malloc(ng * sizeof *g), *h = rb_malloc(nh * sizeof *h);
  for (int p = 0; p < CG_PACKED_NPART; p++)
    j->part[p] = rb_malloc(cg_packed_part_bytes((CgPackedPart)p, j->k, j->N, j->K));
  if (!W || !g || !h || !j->part[CG_PACKED_BITS] || !j->part[CG_PACKED_G] || !j->part[CG_PACKED_H]) {
    rb_buf_printf(&j->err, "out of memory");
    j->rc = RB_EINTERNAL;
    goto done;
  }
  for (size_t i = 0; i < nk; i++) {
    W[i] = rt_tensor_f32(j->t, i);
    j->w2 += (double)W[i] * W[i];
  }
  /* f16 scales inside the fit: the signs of paths 2.. then follow from the
   * scales as stored, and the error reported is the stored model's. */
  TrPtqOptions opt = {.rounds = rounds, .f16_scales = 1};
  j->rc = tr_ptq_linear(W, j->N, j->K, j->k, &opt, j->part[CG_PACKED_BITS], g, h, &j->stats, &j->err);
  if (j->rc == RB_OK) {
    uint16_t *g16 = j->part[CG_PACKED_G], *h16 = j->part[CG_PACKED_H];
    for (size_t i = 0; i < ng; i++) g16[i] = rb_f16_from_f32(g[i]);
    for (size_t i = 0; i < nh; i++) h16[i] = rb_f16_from_f32(h[i]);
  }
done:
  rb_free(W);
  rb_free(g);
  rb_free(h);
  j->ms = rb_now_ms() - t0;
}

/* Frees a job's result once it is written (or abandoned). */
static void job_release(Job *j) {
  for (int p = 0; p < CG_PACKED_NPART; p++) {
    rb_free(j->part[p]);
    j->part[p] = NULL;
  }
  rb_buf_free(&j->err);
}

/* Worker: take the next job until none is left or one failed. */
static void *worker(void *arg) {
  Pool *p = arg;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    int i = p->stop ? p->njobs : p->next;
    if (i < p->njobs) p->next++;
    pthread_mutex_unlock(&p->mu);
    if (i >= p->njobs) break;
    run_job(&p->jobs[i], p->rounds);
    pthread_mutex_lock(&p->mu);
    p->jobs[i].done = 1;
    if (p->jobs[i].rc) p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
  return NULL;
}

/* Compiles the comma-separated list; RB_EUSER with the bad item in err. */
static int skip_compile(SkipList *s, const char *list, RbBuf *err) {
  if (!(s->copy = rb_strdup(list))) return RB_EINTERNAL;
  for (char *save = NULL, *item = strtok_r(s->copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    if (s->n == MAX_SKIP) {
      rb_buf_printf(err, "--skip: more than %d items", MAX_SKIP);
      return RB_EUSER;
    }
    int e = regcomp(&s->re[s->n], item, REG_EXTENDED | REG_NOSUB);
    if (e) {
      char msg[256];
      regerror(e, &s->re[s->n], msg, sizeof msg);
      rb_buf_printf(err, "--skip: bad regex '%s': %s", item, msg);
      return RB_EUSER;
    }
    s->src[s->n] = item;
    s->used[s->n++] = 0;
  }
  return RB_OK;
}

/* 1 when any item matches name (unanchored, like grep); marks the items used. */
static int skip_match(SkipList *s, const char *name) {
  int hit = 0;
  for (int i = 0; i < s->n; i++)
    if (regexec(&s->re[i], name, 0, NULL, 0) == 0) s->used[i] = hit = 1;
  return hit;
}

/* The dtype packed.c names for a part, as the safetensors writer spells it. */
static RtDtype part_dtype(CgPackedPart p) {
  for (int t = 0; t < RT_NDTYPE; t++)
    if (!strcmp(rt_dtype_name((RtDtype)t), cg_packed_dtype(p))) return (RtDtype)t;
  return RT_NDTYPE;
}

/* "[a, b, ...]" of a tensor's shape, for messages. */
static void put_shape(RbBuf *b, int rank, const int64_t *shape) {
  rb_buf_puts(b, "[");
  for (int i = 0; i < rank; i++) rb_buf_printf(b, "%s%lld", i ? ", " : "", (long long)shape[i]);
  rb_buf_puts(b, "]");
}

/* The input's full-precision <base>.weight for an IR-bound weight of shape
 * [N, K] (the op at IR line `line`), or RB_EUSER naming the file and tensor. */
static int find_weight(const Quant *q, const char *base, int64_t N, int64_t K, int line, const RtTensor **out,
                       RbBuf *err) {
  const char *in = q->o->in, *ir = q->c.shown;
  char name[1024];
  for (int p = 0; p < CG_PACKED_NPART; p++)
    if (!cg_packed_name(name, sizeof name, base, (CgPackedPart)p) && rt_st_find(q->st, name)) {
      rb_buf_printf(err, "%s: '%s' is already quantized ('%s' is in the file); quantize reads full-precision weights",
                    in, base, name);
      return RB_EUSER;
    }
  if (cg_dense_name(name, sizeof name, base)) {
    rb_buf_printf(err, "%s:%d: weight name '%.64s...' is too long", ir, line, base);
    return RB_EUSER;
  }
  const RtTensor *t = rt_st_find(q->st, name);
  if (!t) {
    rb_buf_printf(err, "%s: no tensor '%s', which the IR (%s:%d) binds", in, name, ir, line);
    return RB_EUSER;
  }
  if (t->rank != 2 || t->shape[0] != N || t->shape[1] != K) {
    rb_buf_printf(err, "%s: '%s' is ", in, name);
    put_shape(err, t->rank, t->shape);
    rb_buf_printf(err, " but the IR (%s:%d) says [N, K] = [%lld, %lld]", ir, line, (long long)N, (long long)K);
    return RB_EUSER;
  }
  if (t->dtype != RT_F32 && t->dtype != RT_F16 && t->dtype != RT_BF16) {
    rb_buf_printf(err, "%s: '%s' has dtype %s; quantize reads F16, BF16 or F32", in, name, rt_dtype_name(t->dtype));
    return RB_EUSER;
  }
  if (N > MAX_DIM || K > MAX_DIM) {
    rb_buf_printf(err, "%s: '%s' is [%lld, %lld]; quantize takes at most 2^30 a side", in, name, (long long)N,
                  (long long)K);
    return RB_EUSER;
  }
  *out = t;
  return RB_OK;
}

/* The jobs: every weight of every quantized op, in graph order, each checked
 * against the input before any work so that a bad file fails fast. The
 * unfused graph's linears each read one [T, K] input; weight i of an op is
 * [ints[i], K] (linear_swiglu's two share ints[0]). */
static int plan_jobs(Quant *q, RbBuf *err) {
  const IrGraph *g = q->c.graph;
  int cap = 0;
  for (int i = 0; i < g->nnodes; i++) cap += g->nodes[i].nweights;
  if (!(q->jobs = rb_calloc((size_t)cap + 1, sizeof *q->jobs))) return RB_EINTERNAL;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    int k = n->dead ? 0 : ir_node_paths(n);
    if (!k) continue;
    int64_t K = g->values[n->in[0]].type.dim[1].n;
    for (int w = 0; w < n->nweights; w++) {
      q->nbound++;
      if (skip_match(&q->skip, n->weights[w])) continue;
      Job *j = &q->jobs[q->njobs];
      int64_t N = n->ints[w < n->nint ? w : 0];
      int rc = find_weight(q, n->weights[w], N, K, n->line, &j->t, err);
      if (rc) return rc;
      j->base = n->weights[w], j->N = (int)N, j->K = (int)K, j->k = k;
      q->njobs++;
    }
  }
  if (!q->nbound) {
    rb_buf_printf(err, "%s: the IR quantizes no linear (each has quant = none)", q->c.shown);
    return RB_EUSER;
  }
  return RB_OK;
}

static int by_input(const void *a, const void *b) {
  return ((const Job *)a)->input - ((const Job *)b)->input;
}

/* Put the jobs in input order, the order of writing, so that the workers run
 * just ahead of the writer and few results wait in memory. */
static int order_jobs(Quant *q) {
  RbMap index = {0}; /* input tensor name -> its index */
  int rc = RB_OK;
  for (int i = 0, n = rt_st_count(q->st); i < n && !rc; i++) rc = rb_map_put(&index, rt_st_tensor(q->st, i)->name, i);
  for (int i = 0; i < q->njobs && !rc; i++) rb_map_get(&index, q->jobs[i].t->name, &q->jobs[i].input);
  rb_map_free(&index);
  if (!rc) qsort(q->jobs, (size_t)q->njobs, sizeof *q->jobs, by_input);
  return rc;
}

/* Compile the IR to the verified, unfused graph (one op per weight binding),
 * open the input and plan the jobs. */
static int prepare(Quant *q, TrQuantResult *r, RbBuf *err) {
  const TrQuantOptions *o = q->o;
  RtCompileOptions co = {.path = o->ir, .fe = o->fe, .stop = RT_STAGE_VERIFY};
  int rc = rt_compile(&co, &q->c, err);
  q->compiled = 1;
  if (q->c.diag.data) rb_buf_puts(&r->diag, q->c.diag.data);
  if (rc) return rc;
  if (o->skip && (rc = skip_compile(&q->skip, o->skip, err))) return rc;
  if ((rc = rt_st_open(o->in, &q->st, err))) return rc;
  if ((rc = plan_jobs(q, err))) return rc;
  if ((rc = order_jobs(q))) return rc;
  for (int i = 0; i < q->skip.n; i++)
    if (!q->skip.used[i]) rb_buf_printf(&r->warnings, "--skip '%s' matched no weight\n", q->skip.src[i]);
  return RB_OK;
}

/* Start the workers: o->threads, or the online CPUs up to 8, never more than the jobs. */
static int pool_start(Quant *q) {
  int threads = q->o->threads;
  if (threads <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    threads = c < 1 ? 1 : c > 8 ? 8 : (int)c;
  }
  if (threads > q->njobs) threads = q->njobs;
  q->pool = (Pool){.jobs = q->jobs, .njobs = q->njobs, .rounds = q->o->rounds};
  pthread_mutex_init(&q->pool.mu, NULL);
  pthread_cond_init(&q->pool.cv, NULL);
  q->pool_init = 1;
  if (!(q->tids = rb_calloc((size_t)threads + 1, sizeof *q->tids))) return RB_EINTERNAL;
  for (; q->nthreads < threads; q->nthreads++)
    if (pthread_create(&q->tids[q->nthreads], NULL, worker, &q->pool)) break;
  return q->nthreads || !q->njobs ? RB_OK : RB_EINTERNAL;
}

/* Stop taking jobs and join the workers; fine to call twice. */
static void pool_stop(Quant *q) {
  if (!q->pool_init) return;
  pthread_mutex_lock(&q->pool.mu);
  q->pool.stop = 1;
  pthread_mutex_unlock(&q->pool.mu);
  for (int i = 0; i < q->nthreads; i++) pthread_join(q->tids[i], NULL);
  q->nthreads = 0;
}

/* Add a fitted job's three tensors under its base name (which find_weight
 * checked fits, with the longer ".weight"). */
static int add_packed(RtStWriter *w, const Job *j) {
  char name[1024];
  int rc = RB_OK;
  for (int p = 0; p < CG_PACKED_NPART && !rc; p++) {
    int64_t shape[3];
    int rank = cg_packed_shape((CgPackedPart)p, j->k, j->N, j->K, shape);
    cg_packed_name(name, sizeof name, j->base, (CgPackedPart)p);
    rc = rt_st_writer_add(w, name, part_dtype((CgPackedPart)p), rank, shape, j->part[p]);
  }
  return rc;
}

/* The first failed job's error, naming the file and tensor; RB_OK when none failed. */
static int job_failure(const Quant *q, RbBuf *err) {
  for (int i = 0; i < q->njobs; i++) {
    const Job *j = &q->jobs[i];
    if (j->done && j->rc) {
      rb_buf_printf(err, "%s: '%s': %s", q->o->in, j->t->name, j->err.data ? j->err.data : "failed");
      return j->rc;
    }
  }
  return RB_OK;
}

/* Fit on the pool and write in input order, waiting for each weight as it
 * comes up: only the weights in flight or finished early hold results. */
static int fit_and_write(Quant *q, TrQuantResult *r, RbBuf *err) {
  const TrQuantOptions *o = q->o;
  TrQuantProgress pr = {.count = q->njobs, .skipped = q->nbound - q->njobs};
  for (int i = 0; i < q->njobs; i++) pr.per_k[q->jobs[i].k]++;
  int rc = pool_start(q);
  if (rc) {
    rb_buf_printf(err, "cannot start a thread");
    return rc;
  }
  pr.threads = q->nthreads;
  if (o->progress) o->progress(o->ctx, &pr);

  double t0 = rb_now_ms(), sum_w2 = 0.0, sum_e2 = 0.0;
  RtStWriter *w = NULL;
  if (rt_st_writer_new(&w)) return RB_EINTERNAL;
  /* A writer that fails keeps its error for rt_st_writer_finish to report. */
  int n = rt_st_count(q->st), wrc = RB_OK;
  for (int i = 0, next = 0; i < n && !wrc; i++) {
    const RtTensor *t = rt_st_tensor(q->st, i);
    r->bytes_in += t->nbytes;
    if (next == q->njobs || q->jobs[next].input != i) {
      wrc = rt_st_writer_add(w, t->name, t->dtype, t->rank, t->shape, t->data);
      r->bytes_out += t->nbytes;
      continue;
    }
    Job *j = &q->jobs[next++];
    pthread_mutex_lock(&q->pool.mu);
    while (!j->done && !q->pool.stop) pthread_cond_wait(&q->pool.cv, &q->pool.mu);
    int ready = j->done && !j->rc;
    pthread_mutex_unlock(&q->pool.mu);
    if (!ready) break; /* this or another job failed: job_failure says which */
    wrc = add_packed(w, j);
    uint64_t bytes = cg_packed_bytes(j->k, j->N, j->K);
    r->bytes_packed += bytes, r->bytes_out += bytes;
    r->params += (uint64_t)j->N * j->K;
    sum_w2 += j->w2;
    sum_e2 += j->stats.rel_err * j->stats.rel_err * j->w2;
    if (j->stats.rel_err > r->worst || !r->worst_name) {
      r->worst = j->stats.rel_err;
      rb_free(r->worst_name);
      r->worst_name = rb_strdup(j->base);
    }
    pr.index = ++r->quantized;
    pr.name = j->base, pr.dtype = rt_dtype_name(j->t->dtype), pr.N = j->N, pr.K = j->K, pr.k = j->k;
    pr.stats = &j->stats, pr.ms = j->ms;
    if (o->progress) o->progress(o->ctx, &pr);
    job_release(j);
  }
  /* Every job has finished or been abandoned before the verdict. */
  pool_stop(q);
  if ((rc = job_failure(q, err))) {
    rt_st_writer_free(w);
    return rc;
  }
  char num[16];
  rt_st_writer_meta(w, "format", "rabit-packed 1");
  /* The k of ops without their own quant; each tensor's shape has its own. */
  snprintf(num, sizeof num, "%d", o->fe.paths ? o->fe.paths : q->c.graph->quant_default);
  rt_st_writer_meta(w, "paths", num);
  snprintf(num, sizeof num, "%d", o->rounds);
  rt_st_writer_meta(w, "rounds", num);
  const char *model = rt_st_meta(q->st, "model");
  if (model) rt_st_writer_meta(w, "model", model);
  if (q->c.graph->model) rt_st_writer_meta(w, "rabit_ir_model", q->c.graph->model);
  if ((rc = rt_st_writer_finish(w, o->out, err))) return rc;
  r->skipped = pr.skipped;
  r->rel_err = sum_w2 > 0 ? sqrt(sum_e2 / sum_w2) : 0.0;
  r->ms = rb_now_ms() - t0;
  return RB_OK;
}

static void quant_free(Quant *q) {
  pool_stop(q);
  if (q->pool_init) {
    pthread_mutex_destroy(&q->pool.mu);
    pthread_cond_destroy(&q->pool.cv);
  }
  for (int i = 0; q->jobs && i < q->njobs; i++) job_release(&q->jobs[i]);
  rb_free(q->jobs);
  rb_free(q->tids);
  for (int i = 0; i < q->skip.n; i++) regfree(&q->skip.re[i]);
  rb_free(q->skip.copy);
  rt_st_close(q->st);
  if (q->compiled) rt_compiled_free(&q->c);
}

int tr_quant_model(const TrQuantOptions *o, TrQuantResult *r, RbBuf *err) {
  memset(r, 0, sizeof *r);
  Quant q = {.o = o};
  int rc = prepare(&q, r, err);
  if (!rc) rc = fit_and_write(&q, r, err);
  quant_free(&q);
  return rc;
}

void tr_quant_result_free(TrQuantResult *r) {
  rb_free(r->worst_name);
  rb_buf_free(&r->diag);
  rb_buf_free(&r->warnings);
  memset(r, 0, sizeof *r);
}
