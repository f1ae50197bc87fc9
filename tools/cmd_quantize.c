/* cmd_quantize.c: `rabit quantize`, post-training quantization of a Hugging
 * Face Llama safetensors file to the canonical packed format (DESIGN
 * "Canonical packed format") with the trainer's residual SVID (trainer/ptq.c).
 * Layers are quantized on a pool of threads and written in input order. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/formats/formats.h"
#include "tools/commands.h"
#include "trainer/trainer.h"

/* The linears RaBiT replaces; everything else is copied unchanged. */
#define QUANT_PATTERN \
  "^model\\.layers\\.[0-9]+\\.(self_attn\\.(q|k|v|o)_proj|mlp\\.(gate|up|down)_proj)\\.weight$"

/* The --help text. */
static void usage(FILE *f) {
  fprintf(f,
          "usage: rabit quantize [--paths k] IN.safetensors -o OUT.safetensors [options]\n"
          "\n"
          "Post-training quantization to k residual binary paths: every weight named\n"
          "model.layers.N.self_attn.{q,k,v,o}_proj.weight or model.layers.N.mlp.{gate,up,down}_proj.weight\n"
          "becomes <name>.bits (I32 [k, N, ceil(K/32)]), <name>.g (F16 [k, N]) and <name>.h (F16 [k, K]);\n"
          "every other tensor (embeddings, norms, lm_head) is copied unchanged. Inputs may be F16, BF16\n"
          "or F32. The signs are those RaBiT's coupled forward derives from the original weight, so\n"
          "the output is also RaBiT's step 0.\n"
          "\n"
          "options:\n"
          "  -o, --output FILE   output safetensors (required)\n"
          "  --paths k           residual binary paths, 1..4 (default 2, i.e. 2 bits)\n"
          "  --rounds T          Gauss-Seidel refinement rounds after the greedy fit (default 2;\n"
          "                      0 = greedy residual SVID alone); each round costs about one greedy fit;\n"
          "                      the result is never worse than greedy\n"
          "  --skip LIST         comma-separated POSIX extended regexes; a weight whose name any of\n"
          "                      them matches (anywhere in the name) stays full precision,\n"
          "                      e.g. --skip 'layers\\.0\\.,down_proj'\n"
          "  --threads N         quantize N layers at once (default: the CPUs, at most 8)\n"
          "  -h, --help          this help\n"
          "\n"
          "Prints each layer's relative error ||W - W_hat|| / ||W|| and a summary.\n");
}

/* One quantizable weight and, once a worker is done with it, its result. */
typedef struct {
  const RtTensor *t;
  int N, K;
  int done, rc;
  uint32_t *bits;       /* (k, N, ceil(K/32)) */
  uint16_t *g, *h;      /* (k, N), (k, K) f16 */
  double w2, ms;        /* ||W||^2 and the time it took */
  TrPtqStats stats;
  RbBuf err;
} Job;

typedef struct {
  Job *jobs;
  int njobs, next, stop, finished;
  int paths, rounds;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} Pool;

/* Monotonic wall clock in milliseconds, for the per-layer times. */
/* Tensor element i as float, for the input dtypes we accept. memcpy because
 * safetensors offsets need not be aligned. */
static float load_elem(const RtTensor *t, size_t i) {
  const unsigned char *p = t->data;
  if (t->dtype == RT_F32) {
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
  }
  uint16_t u;
  memcpy(&u, p + 2 * i, 2);
  if (t->dtype == RT_F16) return rb_f32_from_f16(u);
  uint32_t x = (uint32_t)u << 16; /* BF16 is the top half of an f32 */
  float f;
  memcpy(&f, &x, 4);
  return f;
}

/* Quantize one job; fills its result or err. Runs on a worker thread. */
static void run_job(Job *j, int paths, int rounds) {
  double t0 = rb_now_ms();
  size_t nk = (size_t)j->N * j->K, words = (size_t)(j->K + 31) / 32;
  float *W = rb_malloc(nk * sizeof *W);
  float *g = rb_malloc((size_t)paths * j->N * sizeof *g);
  float *h = rb_malloc((size_t)paths * j->K * sizeof *h);
  j->bits = rb_malloc((size_t)paths * j->N * words * sizeof *j->bits);
  j->g = rb_malloc((size_t)paths * j->N * sizeof *j->g);
  j->h = rb_malloc((size_t)paths * j->K * sizeof *j->h);
  if (!W || !g || !h || !j->bits || !j->g || !j->h) {
    rb_buf_printf(&j->err, "out of memory");
    j->rc = RB_EINTERNAL;
    goto done;
  }
  for (size_t i = 0; i < nk; i++) {
    W[i] = load_elem(j->t, i);
    j->w2 += (double)W[i] * W[i];
  }
  /* f16 scales inside the fit: the signs of paths 2.. then follow from the
   * scales as stored, and the error printed is the stored model's. */
  TrPtqOptions opt = {.rounds = rounds, .f16_scales = 1};
  j->rc = tr_ptq_linear(W, j->N, j->K, paths, &opt, j->bits, g, h, &j->stats, &j->err);
  if (j->rc == RB_OK) {
    for (size_t i = 0; i < (size_t)paths * j->N; i++) j->g[i] = rb_f16_from_f32(g[i]);
    for (size_t i = 0; i < (size_t)paths * j->K; i++) j->h[i] = rb_f16_from_f32(h[i]);
  }
done:
  rb_free(W);
  rb_free(g);
  rb_free(h);
  j->ms = rb_now_ms() - t0;
}

/* Frees a job's result once it is written (or abandoned). */
static void job_release(Job *j) {
  rb_free(j->bits);
  rb_free(j->g);
  rb_free(j->h);
  j->bits = NULL, j->g = j->h = NULL;
  rb_buf_free(&j->err);
}

/* Worker: take the next job until none is left or another failed. */
static void *worker(void *arg) {
  Pool *p = arg;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    int i = p->stop ? p->njobs : p->next;
    if (i < p->njobs) p->next++;
    pthread_mutex_unlock(&p->mu);
    if (i >= p->njobs) break;
    run_job(&p->jobs[i], p->paths, p->rounds);
    pthread_mutex_lock(&p->mu);
    p->jobs[i].done = 1;
    if (p->jobs[i].rc) p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
  return NULL;
}

/* Parse a decimal integer in [lo, hi]; 0 on success. */
static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

/* The --skip list: compiled regexes and whether each matched anything. */
typedef struct {
  regex_t re[64];
  char *src[64];
  int used[64];
  int n;
} SkipList;

/* Compiles the comma-separated list; RB_EUSER after printing what is wrong. */
static int skip_compile(SkipList *s, const char *list) {
  char *copy = rb_strdup(list);
  if (!copy) return RB_EINTERNAL;
  int rc = RB_OK;
  for (char *save = NULL, *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    if (s->n == 64) {
      fprintf(stderr, "rabit quantize: --skip: more than 64 items\n");
      rc = RB_EUSER;
      break;
    }
    int e = regcomp(&s->re[s->n], item, REG_EXTENDED | REG_NOSUB);
    if (e) {
      char msg[256];
      regerror(e, &s->re[s->n], msg, sizeof msg);
      fprintf(stderr, "rabit quantize: --skip: bad regex '%s': %s\n", item, msg);
      rc = RB_EUSER;
      break;
    }
    s->src[s->n] = rb_strdup(item);
    s->used[s->n++] = 0;
  }
  rb_free(copy);
  return rc;
}

/* 1 when any item matches name (unanchored, like grep); marks the items used. */
static int skip_match(SkipList *s, const char *name) {
  int hit = 0;
  for (int i = 0; i < s->n; i++)
    if (regexec(&s->re[i], name, 0, NULL, 0) == 0) s->used[i] = hit = 1;
  return hit;
}

/* Frees the compiled list; fine on an empty one. */
static void skip_free(SkipList *s) {
  for (int i = 0; i < s->n; i++) {
    regfree(&s->re[i]);
    rb_free(s->src[i]);
  }
}

/* Add job j's three tensors under <name without .weight>. */
static int add_job(RtStWriter *w, const Job *j, int paths) {
  size_t len = strlen(j->t->name) - strlen(".weight");
  char *name = rb_malloc(len + 8);
  if (!name) return RB_EINTERNAL;
  memcpy(name, j->t->name, len);
  int64_t sb[3] = {paths, j->N, (j->K + 31) / 32}, sg[2] = {paths, j->N}, sh[2] = {paths, j->K};
  strcpy(name + len, ".bits");
  int rc = rt_st_writer_add(w, name, RT_I32, 3, sb, j->bits);
  strcpy(name + len, ".g");
  if (!rc) rc = rt_st_writer_add(w, name, RT_F16, 2, sg, j->g);
  strcpy(name + len, ".h");
  if (!rc) rc = rt_st_writer_add(w, name, RT_F16, 2, sh, j->h);
  rb_free(name);
  return rc;
}

/* See commands.h. */
/* rabit import leaves tokenizer.txt beside the weights; keep it beside the
 * quantized ones too, so that rabit run finds it. A failure only warns. */
static void copy_tokenizer(const char *in, const char *out) {
  char from[4096], to[4096];
  const char *a = strrchr(in, '/'), *b = strrchr(out, '/');
  snprintf(from, sizeof from, "%.*stokenizer.txt", a ? (int)(a - in + 1) : 0, in);
  snprintf(to, sizeof to, "%.*stokenizer.txt", b ? (int)(b - out + 1) : 0, out);
  RbBuf text = {0};
  if (strcmp(from, to) == 0 || access(to, F_OK) == 0 || rb_read_file(from, &text) != 0) {
    rb_buf_free(&text);
    return;
  }
  const void *part = text.data;
  if (rb_write_atomic(to, &part, &text.len, 1, NULL) != RB_OK)
    fprintf(stderr, "rabit quantize: warning: could not copy %s to %s: %s\n", from, to, strerror(errno));
  else printf("copied %s beside the output\n", from);
  rb_buf_free(&text);
}

int cmd_quantize(int argc, char **argv) {
  const char *in = NULL, *out = NULL, *skip = NULL;
  int paths = 2, rounds = 2, threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val = NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    static const char *const valued[] = {"-o", "--output", "--paths", "--rounds", "--skip", "--threads"};
    const char *opt = NULL;
    for (size_t v = 0; v < sizeof valued / sizeof *valued; v++) {
      size_t n = strlen(valued[v]);
      if (!strcmp(a, valued[v])) {
        if (i + 1 >= argc) {
          fprintf(stderr, "rabit quantize: %s needs a value\n", a);
          return 1;
        }
        opt = valued[v], val = argv[++i];
      } else if (valued[v][1] == '-' && !strncmp(a, valued[v], n) && a[n] == '=') {
        opt = valued[v], val = a + n + 1;
      }
      if (opt) break;
    }
    if (!opt) {
      if (a[0] == '-' && a[1]) {
        fprintf(stderr, "rabit quantize: unknown option '%s' (see rabit quantize --help)\n", a);
        return 1;
      }
      if (in) {
        fprintf(stderr, "rabit quantize: more than one input ('%s' and '%s')\n", in, a);
        return 1;
      }
      in = a;
    } else if (!strcmp(opt, "-o") || !strcmp(opt, "--output")) {
      out = val;
    } else if (!strcmp(opt, "--paths")) {
      if (parse_int(val, 1, TR_MAX_PATHS, &paths)) {
        fprintf(stderr, "rabit quantize: --paths needs an integer 1..%d, got '%s'\n", TR_MAX_PATHS, val);
        return 1;
      }
    } else if (!strcmp(opt, "--rounds")) {
      if (parse_int(val, 0, 1000, &rounds)) {
        fprintf(stderr, "rabit quantize: --rounds needs an integer 0..1000, got '%s'\n", val);
        return 1;
      }
    } else if (!strcmp(opt, "--threads")) {
      if (parse_int(val, 1, 1024, &threads)) {
        fprintf(stderr, "rabit quantize: --threads needs an integer 1..1024, got '%s'\n", val);
        return 1;
      }
    } else {
      skip = val;
    }
  }
  if (!in || !out) {
    fprintf(stderr, "rabit quantize: %s (see rabit quantize --help)\n",
            !in ? "no input file" : "no output file (-o OUT.safetensors)");
    return 1;
  }

  int status = 1;
  RtSafetensors *st = NULL;
  RtStWriter *w = NULL;
  Job *jobs = NULL;
  int *job_of = NULL;
  pthread_t *tids = NULL;
  int nthreads = 0, njobs = 0, nskipped = 0;
  Pool pool;
  int pool_init = 0;
  regex_t quant_re;
  SkipList sk = {0};
  RbBuf err = {0};
  if (regcomp(&quant_re, QUANT_PATTERN, REG_EXTENDED | REG_NOSUB)) {
    fprintf(stderr, "rabit quantize: internal error: bad name pattern\n");
    return 2;
  }
  if (skip && (status = skip_compile(&sk, skip))) {
    status = status == RB_EUSER ? 1 : 2;
    goto out;
  }
  status = 1;

  if (rt_st_open(in, &st, &err)) {
    fprintf(stderr, "rabit quantize: %s\n", err.data ? err.data : in);
    goto out;
  }

  /* Check every quantizable weight before any work, so a bad file fails fast. */
  int n = rt_st_count(st), matched = 0;
  jobs = rb_calloc((size_t)n + 1, sizeof *jobs);
  job_of = rb_malloc(((size_t)n + 1) * sizeof *job_of);
  if (!jobs || !job_of) {
    status = 2;
    fprintf(stderr, "rabit quantize: out of memory\n");
    goto out;
  }
  uint64_t bytes_in = 0, params_q = 0;
  for (int i = 0; i < n; i++) {
    const RtTensor *t = rt_st_tensor(st, i);
    bytes_in += t->nbytes;
    job_of[i] = -1;
    if (regexec(&quant_re, t->name, 0, NULL, 0)) continue;
    matched++;
    if (skip_match(&sk, t->name)) {
      nskipped++;
      continue;
    }
    if (t->rank != 2) {
      fprintf(stderr, "rabit quantize: %s: tensor '%s' has rank %d, not 2 (a linear weight is [N, K])\n", in,
              t->name, t->rank);
      goto out;
    }
    if (t->dtype != RT_F32 && t->dtype != RT_F16 && t->dtype != RT_BF16) {
      fprintf(stderr, "rabit quantize: %s: tensor '%s' has dtype %s; quantize reads F16, BF16 or F32\n", in,
              t->name, rt_dtype_name(t->dtype));
      goto out;
    }
    if (t->shape[0] < 1 || t->shape[1] < 1 || t->shape[0] > (1 << 30) || t->shape[1] > (1 << 30)) {
      fprintf(stderr, "rabit quantize: %s: tensor '%s' has shape [%lld, %lld]; both must be 1..2^30\n", in,
              t->name, (long long)t->shape[0], (long long)t->shape[1]);
      goto out;
    }
    Job *j = &jobs[njobs];
    j->t = t;
    j->N = (int)t->shape[0];
    j->K = (int)t->shape[1];
    params_q += (uint64_t)j->N * j->K;
    job_of[i] = njobs++;
  }
  if (!matched) {
    fprintf(stderr,
            "rabit quantize: %s: no linear weights to quantize (names like "
            "model.layers.0.self_attn.q_proj.weight or model.layers.0.mlp.down_proj.weight)\n",
            in);
    goto out;
  }
  for (int i = 0; i < sk.n; i++)
    if (!sk.used[i]) fprintf(stderr, "rabit quantize: warning: --skip '%s' matched no weight\n", sk.src[i]);

  if (!threads) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    threads = c < 1 ? 1 : c > 8 ? 8 : (int)c;
  }
  if (threads > njobs) threads = njobs;
  printf("quantizing %d weights of %s to %d paths (%d refinement rounds, %d threads)\n", njobs, in, paths, rounds,
         threads);
  if (nskipped) printf("keeping %d weights full precision (--skip)\n", nskipped);
  fflush(stdout);

  pool = (Pool){.jobs = jobs, .njobs = njobs, .paths = paths, .rounds = rounds};
  pthread_mutex_init(&pool.mu, NULL);
  pthread_cond_init(&pool.cv, NULL);
  pool_init = 1;
  tids = rb_calloc((size_t)threads + 1, sizeof *tids);
  if (!tids) {
    status = 2;
    fprintf(stderr, "rabit quantize: out of memory\n");
    goto out;
  }
  for (; nthreads < threads; nthreads++)
    if (pthread_create(&tids[nthreads], NULL, worker, &pool)) break;
  if (!nthreads && njobs) {
    status = 2;
    fprintf(stderr, "rabit quantize: cannot start a thread\n");
    goto out;
  }

  /* Write in input order, waiting for each layer as it comes up: only the
   * layers in flight or finished early hold their results in memory. */
  double t0 = rb_now_ms();
  if (rt_st_writer_new(&w)) {
    status = 2;
    goto out;
  }
  double sum_w2 = 0.0, sum_e2 = 0.0, worst = -1.0;
  const char *worst_name = "";
  uint64_t bytes_out = 0, bytes_q = 0;
  int written = 0;
  for (int i = 0; i < n; i++) {
    const RtTensor *t = rt_st_tensor(st, i);
    if (job_of[i] < 0) {
      if (rt_st_writer_add(w, t->name, t->dtype, t->rank, t->shape, t->data)) break;
      bytes_out += t->nbytes;
      continue;
    }
    Job *j = &jobs[job_of[i]];
    pthread_mutex_lock(&pool.mu);
    while (!j->done && !pool.stop) pthread_cond_wait(&pool.cv, &pool.mu);
    int ready = j->done;
    pthread_mutex_unlock(&pool.mu);
    if (!ready) break; /* another layer failed; it is reported below */
    if (j->rc) {
      fprintf(stderr, "rabit quantize: %s: tensor '%s': %s\n", in, t->name, j->err.data ? j->err.data : "failed");
      status = j->rc == RB_EUSER ? 1 : 2;
      goto out;
    }
    int rc = add_job(w, j, paths);
    written++;
    const TrPtqStats *s = &j->stats;
    printf("[%*d/%d] %-40.*s %5d x %-5d %-4s rel_err %.6f  (after each path:", njobs > 99 ? 3 : 2, written, njobs,
           (int)(strlen(t->name) - 7), t->name, j->N, j->K, rt_dtype_name(t->dtype), s->rel_err);
    for (int p = 0; p < paths; p++) printf(" %.4f", s->rel_err_path[p]);
    if (rounds) printf("; greedy %.6f, kept %s %d", s->rel_err_greedy, s->round_kept ? "round" : "greedy", s->round_kept);
    printf(")  %.0f ms\n", j->ms);
    fflush(stdout);
    sum_w2 += j->w2;
    sum_e2 += s->rel_err * s->rel_err * j->w2;
    if (s->rel_err > worst) worst = s->rel_err, worst_name = t->name;
    uint64_t q = (uint64_t)paths * j->N * ((j->K + 31) / 32) * 4 + (uint64_t)paths * (j->N + j->K) * 2;
    bytes_q += q;
    bytes_out += q;
    job_release(j);
    if (rc) break;
  }
  /* Every job has finished or been abandoned before the writer's verdict. */
  pthread_mutex_lock(&pool.mu);
  pool.stop = 1;
  pthread_mutex_unlock(&pool.mu);
  for (int i = 0; i < nthreads; i++) pthread_join(tids[i], NULL);
  nthreads = 0;
  for (int i = 0; i < njobs; i++)
    if (jobs[i].done && jobs[i].rc) {
      fprintf(stderr, "rabit quantize: %s: tensor '%s': %s\n", in, jobs[i].t->name,
              jobs[i].err.data ? jobs[i].err.data : "failed");
      status = jobs[i].rc == RB_EUSER ? 1 : 2;
      goto out;
    }

  char num[16];
  snprintf(num, sizeof num, "%d", paths);
  rt_st_writer_meta(w, "format", "rabit-packed 1");
  rt_st_writer_meta(w, "paths", num);
  snprintf(num, sizeof num, "%d", rounds);
  rt_st_writer_meta(w, "rounds", num);
  const char *model = rt_st_meta(st, "model");
  if (model) rt_st_writer_meta(w, "model", model);
  int rc = rt_st_writer_finish(w, out, &err);
  w = NULL;
  if (rc) {
    fprintf(stderr, "rabit quantize: %s\n", err.data ? err.data : out);
    status = rc == RB_EUSER ? 1 : 2;
    goto out;
  }
  printf("quantized %d weights (%.1f M parameters) to %d paths: overall rel_err %.6f, worst %.6f (%.*s)\n",
         njobs, params_q / 1e6, paths, sum_w2 > 0 ? sqrt(sum_e2 / sum_w2) : 0.0, worst < 0 ? 0.0 : worst,
         worst_name[0] ? (int)(strlen(worst_name) - 7) : 0, worst_name);
  printf("%.3f bits per quantized weight; %s: %.1f MB -> %s: %.1f MB; %.1f s\n",
         params_q ? bytes_q * 8.0 / params_q : 0.0, in, bytes_in / 1e6, out, bytes_out / 1e6,
         (rb_now_ms() - t0) / 1e3);
  copy_tokenizer(in, out);
  status = 0;

out:
  if (pool_init) {
    pthread_mutex_lock(&pool.mu);
    pool.stop = 1;
    pthread_mutex_unlock(&pool.mu);
    for (int i = 0; i < nthreads; i++) pthread_join(tids[i], NULL);
    pthread_mutex_destroy(&pool.mu);
    pthread_cond_destroy(&pool.cv);
  }
  for (int i = 0; jobs && i < njobs; i++) job_release(&jobs[i]);
  rb_free(jobs);
  rb_free(job_of);
  rb_free(tids);
  rt_st_writer_free(w);
  rt_st_close(st);
  skip_free(&sk);
  regfree(&quant_re);
  rb_buf_free(&err);
  return status;
}
