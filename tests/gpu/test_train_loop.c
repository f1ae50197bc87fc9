/* test_train_loop.c: rabit train's loop on samples/tiny.ir with random
 * weights and random token shards: the loss falls; a run stopped and resumed
 * from its checkpoint repeats the uninterrupted run's losses bit for bit; so
 * does one killed with SIGKILL mid-run; a held-out shard is refused; the
 * export passes the weight check of a plan and loads. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/formats/formats.h"
#include "tests/common/check.h"
#include "tests/common/gpu.h"
#include "tests/common/rng.h"
#include "trainer/trainer.h"

enum { V = 256, D = 64, F = 160, L = 2, KV = 32 };

static float gauss(void) {
  double u = unif() + 1e-12, v = unif();
  return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static float *randn(size_t n, float scale, float mean) {
  float *p = malloc(n * sizeof *p);
  for (size_t i = 0; i < n; i++) p[i] = mean + scale * gauss();
  return p;
}

/* A random full-precision tiny model with Hugging Face names (F32). */
static int write_model(const char *path) {
  RtStWriter *w;
  if (rt_st_writer_new(&w)) return -1;
  float *bufs[64];
  int nb = 0;
  int64_t se[2] = {V, D}, sd[1] = {D};
  rt_st_writer_add(w, "model.embed_tokens.weight", RT_F32, 2, se, bufs[nb++] = randn((size_t)V * D, 1.0f, 0));
  rt_st_writer_add(w, "model.norm.weight", RT_F32, 1, sd, bufs[nb++] = randn(D, 0.1f, 1.0f));
  static const struct { const char *name; int N, K; } lin[] = {
      {"self_attn.q_proj", D, D}, {"self_attn.k_proj", KV, D}, {"self_attn.v_proj", KV, D}, {"self_attn.o_proj", D, D},
      {"mlp.gate_proj", F, D},    {"mlp.up_proj", F, D},       {"mlp.down_proj", D, F}};
  char name[128];
  for (int l = 0; l < L; l++) {
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    rt_st_writer_add(w, name, RT_F32, 1, sd, bufs[nb++] = randn(D, 0.1f, 1.0f));
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    rt_st_writer_add(w, name, RT_F32, 1, sd, bufs[nb++] = randn(D, 0.1f, 1.0f));
    for (int j = 0; j < 7; j++) {
      int64_t s2[2] = {lin[j].N, lin[j].K};
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, lin[j].name);
      rt_st_writer_add(w, name, RT_F32, 2, s2, bufs[nb++] = randn((size_t)lin[j].N * lin[j].K, 1.0f / sqrtf((float)lin[j].K), 0));
    }
  }
  RbBuf err = {0};
  int rc = rt_st_writer_finish(w, path, &err);
  if (rc) printf("writing %s: %s\n", path, err.data);
  rb_buf_free(&err);
  for (int i = 0; i < nb; i++) free(bufs[i]);
  return rc;
}

static int write_tokens(const char *path, int32_t *tokens, uint64_t n, TrSplit split, unsigned char tag) {
  TrShard s = {.split = split, .ntokens = n, .vocab = V, .tokens = tokens};
  memset(s.source_sha256, tag, sizeof s.source_sha256);
  RbBuf err = {0};
  int rc = tr_shard_write(path, &s, &err);
  if (rc) printf("writing %s: %s\n", path, err.data);
  rb_buf_free(&err);
  return rc;
}

/* n tokens with some structure to learn: a noisy repeating pattern. */
static int32_t *pattern(uint64_t n) {
  int32_t *t = malloc(n * sizeof *t);
  for (uint64_t i = 0; i < n; i++) t[i] = (int32_t)(rnd() % 4 ? (i * 7) % V : rnd() % V);
  return t;
}

static int write_shard(const char *path, uint64_t n, TrSplit split, unsigned char tag) {
  int32_t *t = pattern(n);
  int rc = write_tokens(path, t, n, split, tag);
  free(t);
  return rc;
}

typedef struct {
  double loss[64];
  int n;
} Losses;

static void record(void *ctx, const TrTrainProgress *p) {
  Losses *l = ctx;
  if (p->event == TR_EVENT_STEP && l->n < 64) l->loss[l->n++] = p->loss;
}

static TrTrainOptions options(const char *ir, const char *weights, const char *data, const char *out, Losses *rec) {
  TrTrainOptions o = {.step = {.ir = ir, .weights = weights, .batch = 4, .seq = 32},
                      .data = data,
                      .out = out,
                      .method = "rabit",
                      .tokens = 24 * 4 * 32,
                      .seed = 7,
                      .lr_w = 3e-3,
                      .lr_s = 1e-3,
                      .warmup = 4,
                      .ckpt_every = 4,
                      .log_every = 1,
                      .progress = record,
                      .ctx = rec};
  return o;
}

typedef struct {
  double ppl[16];
  int step[16], n;
} Vals;

static void record_eval(void *ctx, const TrTrainProgress *p) {
  Vals *v = ctx;
  if (p->event == TR_EVENT_EVAL && v->n < 16) v->ppl[v->n] = p->val_ppl, v->step[v->n++] = p->step;
}

/* The losses of steps first..last as the checkpoint's history records them. */
static int history(const char *out, double *loss, int max) {
  char path[512];
  snprintf(path, sizeof path, "%s/checkpoint.safetensors", out);
  TrCkpt c;
  RbBuf err = {0};
  if (tr_ckpt_read(path, &c, &err)) {
    printf("reading %s: %s\n", path, err.data);
    rb_buf_free(&err);
    return -1;
  }
  int n = 0;
  for (int i = 0; i < c.nhistory && n < max; i++) loss[n++] = c.history[i].train_loss;
  tr_ckpt_free(&c);
  return n;
}

/* The child of the kill -9 case: a long run, checkpointing every 4 steps. */
static int child(const char *ir, const char *weights, const char *data, const char *out) {
  Losses lc = {0};
  TrTrainOptions oc = options(ir, weights, data, out, &lc);
  oc.tokens = (uint64_t)1000 * 4 * 32; /* long enough to be killed */
  TrTrainResult r;
  RbBuf e = {0};
  int rc = tr_train(&oc, &r, &e);
  if (rc) printf("child: %s\n", e.data ? e.data : "?");
  return rc ? 3 : 0;
}

int main(int argc, char **argv) {
  if (argc == 6 && !strcmp(argv[2], "--child")) {
    char ir[512];
    snprintf(ir, sizeof ir, "%s/tiny.ir", argv[1]);
    return child(ir, argv[3], argv[4], argv[5]);
  }
  char arch[16];
  RtGpu *probe = gpu_open_or_skip(arch);
  rt_gpu_close(probe); /* tr_train opens its own */
  const char *samples = argc > 1 ? argv[1] : "samples";
  test_rng ^= (uint64_t)getpid() << 16;
  char dir[] = "/tmp/rabit_train_loop_XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char ir[512], weights[600], data[600], held[600], shard[700], out_a[600], out_b[600], out_c[600];
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
  snprintf(data, sizeof data, "%s/data", dir);
  snprintf(held, sizeof held, "%s/held", dir);
  snprintf(out_a, sizeof out_a, "%s/a", dir);
  snprintf(out_b, sizeof out_b, "%s/b", dir);
  snprintf(out_c, sizeof out_c, "%s/c", dir);
  mkdir(data, 0755), mkdir(held, 0755);
  snprintf(shard, sizeof shard, "%s/train.shard", data);
  if (write_model(weights) || write_shard(shard, 20000, TR_SPLIT_TRAIN, 1)) return 1;

  /* A: the uninterrupted run, on one window of 32 tokens (every batch the same), where the loss must fall */
  char fixed[600];
  snprintf(fixed, sizeof fixed, "%s/fixed", dir);
  mkdir(fixed, 0755);
  snprintf(shard, sizeof shard, "%s/one.shard", fixed);
  if (write_shard(shard, 32, TR_SPLIT_TRAIN, 3)) return 1;
  Losses la = {0};
  TrTrainOptions o = options(ir, weights, fixed, out_a, &la);
  TrTrainResult r;
  RbBuf err = {0};
  int rc = tr_train(&o, &r, &err);
  CHECK(rc == RB_OK, "train: %s", err.data ? err.data : "?");
  CHECK(la.n == 24, "%d progress lines, expected 24", la.n);
  double first = 0, last = 0;
  for (int i = 0; i < 4; i++) first += la.loss[i] / 4, last += la.loss[la.n - 1 - i] / 4;
  printf("run A: %d steps, loss %.4f -> %.4f, %.0f tok/s, export %s\n", r.steps, first, last, r.tok_per_s,
         r.export_path);
  CHECK(last < 0.7 * first, "the loss did not fall: %.4f -> %.4f", first, last);
  struct stat sb;
  char path[700];
  snprintf(path, sizeof path, "%s/loss.svg", out_a);
  CHECK(stat(path, &sb) == 0 && sb.st_size > 100, "no loss curve at %s", path);
  CHECK(stat(r.export_path, &sb) == 0, "no export at %s", r.export_path);
  RtSafetensors *st = NULL;
  rb_buf_free(&err);
  CHECK(rt_st_open(r.export_path, &st, &err) == RB_OK && rt_st_meta(st, "trained_by"), "the export: %s",
        err.data ? err.data : "no trained_by");
  rt_st_close(st);

  /* validation every 4 steps on 4 held-out windows of 1024 (2 validation): best.safetensors holds the
   * export of the step whose validation was lowest, whichever step that is */
  {
    Vals vals = {0};
    char out_v[600], val_dir[600];
    snprintf(out_v, sizeof out_v, "%s/v", dir);
    snprintf(val_dir, sizeof val_dir, "%s/val", dir);
    mkdir(val_dir, 0755);
    int32_t *stream = pattern(4 * 1024); /* the held-out stream and its "KJV part", the first half */
    snprintf(shard, sizeof shard, "%s/heldout.shard", val_dir);
    int bad = write_tokens(shard, stream, 4 * 1024, TR_SPLIT_HELDOUT, 4);
    snprintf(shard, sizeof shard, "%s/heldout-kjv.shard", val_dir);
    bad = bad || write_tokens(shard, stream, 2 * 1024, TR_SPLIT_HELDOUT, 5);
    free(stream);
    if (bad) return 1;
    TrTrainOptions ov = options(ir, weights, fixed, out_v, NULL);
    ov.eval_data = val_dir, ov.eval_every = 4, ov.progress = record_eval, ov.ctx = &vals;
    rb_buf_free(&err);
    rc = tr_train(&ov, &r, &err);
    int argmin = 0;
    for (int i = 1; i < vals.n; i++)
      if (vals.ppl[i] < vals.ppl[argmin]) argmin = i;
    printf("validation: %d evaluations, best ppl %.4f at step %d; best.safetensors from step %d\n", vals.n,
           vals.n ? vals.ppl[argmin] : 0, vals.n ? vals.step[argmin] : 0, r.best_step);
    CHECK(rc == RB_OK && vals.n == 6, "validated run: %s (%d evaluations, expected 6)", err.data ? err.data : "ok",
          vals.n);
    CHECK(vals.n && r.best_step == vals.step[argmin] && fabs(r.best_val_ppl - vals.ppl[argmin]) < 1e-9,
          "best step %d (ppl %g), the lowest validation was at step %d", r.best_step, r.best_val_ppl,
          vals.n ? vals.step[argmin] : -1);
    rb_buf_free(&err);
    const char *step = NULL;
    st = NULL;
    CHECK(r.best_path[0] && rt_st_open(r.best_path, &st, &err) == RB_OK && (step = rt_st_meta(st, "step")) &&
              atoi(step) == r.best_step,
          "%s: %s (step %s, expected %d)", r.best_path, err.data ? err.data : "opened", step ? step : "none",
          r.best_step);
    if (st) rt_st_close(st);
  }

  /* standard QAT on the same window: its loss falls too; and --method ptq exports the init untrained */
  {
    Losses ls = {0};
    char out_s[600], out_p[600];
    snprintf(out_s, sizeof out_s, "%s/std", dir);
    snprintf(out_p, sizeof out_p, "%s/ptq", dir);
    TrTrainOptions os = options(ir, weights, fixed, out_s, &ls);
    os.method = "standard";
    rb_buf_free(&err);
    rc = tr_train(&os, &r, &err);
    double f = 0, e = 0;
    for (int i = 0; i < 4 && ls.n >= 8; i++) f += ls.loss[i] / 4, e += ls.loss[ls.n - 1 - i] / 4;
    printf("standard QAT: %d steps, loss %.4f -> %.4f, export %s\n", r.steps, f, e, r.export_path);
    CHECK(rc == RB_OK && ls.n == 24 && e < 0.9 * f, "standard QAT: %s, loss %.4f -> %.4f",
          err.data ? err.data : "ok", f, e);
    /* the calibrated initialization, then 8 steps */
    char out_i[600];
    snprintf(out_i, sizeof out_i, "%s/init", dir);
    TrTrainOptions oi = options(ir, weights, data, out_i, &ls);
    oi.init = "rabit", oi.init_opt = (TrInitOptions){0.5, 0.5, 2}, oi.calib_tokens = 512, oi.max_steps = 8;
    ls.n = 0;
    rb_buf_free(&err);
    rc = tr_train(&oi, &r, &err);
    CHECK(rc == RB_OK && ls.n == 8, "--init rabit: %s (%d steps)", err.data ? err.data : "ok", ls.n);
    TrTrainOptions op = options(ir, weights, fixed, out_p, &ls);
    op.method = "ptq", op.tokens = 0;
    rb_buf_free(&err);
    rc = tr_train(&op, &r, &err);
    CHECK(rc == RB_OK && r.steps == 0 && r.export_path[0], "ptq: %s (steps %d)", err.data ? err.data : "ok", r.steps);
  }

  /* B: 10 steps, then resumed to the end; A again on the full shard as its reference */
  la.n = 0;
  o = options(ir, weights, data, out_a, &la);
  rb_buf_free(&err);
  rc = tr_train(&o, &r, &err);
  CHECK(rc == RB_OK, "train: %s", err.data ? err.data : "?");
  Losses lb = {0};
  o = options(ir, weights, data, out_b, &lb);
  o.max_steps = 10;
  rb_buf_free(&err);
  rc = tr_train(&o, &r, &err);
  o.max_steps = 0, o.resume = 1;
  if (!rc) rc = tr_train(&o, &r, &err);
  CHECK(rc == RB_OK && lb.n == 24, "stop and resume: %s (%d steps)", err.data ? err.data : "?", lb.n);
  int same = lb.n == la.n;
  for (int i = 0; same && i < la.n; i++) same = lb.loss[i] == la.loss[i];
  CHECK(same, "the resumed run's losses differ from the uninterrupted run's");

  /* C: killed with SIGKILL after its checkpoint at step 8, then resumed */
  /* CUDA does not survive fork(): the run to kill is this program again, exec'ed */
  pid_t pid = fork();
  if (pid == 0) {
    execl("/proc/self/exe", argv[0], samples, "--child", weights, data, out_c, (char *)NULL);
    _exit(4);
  }
  snprintf(path, sizeof path, "%s/checkpoint.safetensors", out_c);
  double hc[64];
  int nc = 0;
  for (int i = 0; i < 600 && nc < 8; i++) { /* up to 60 s for the step-8 checkpoint */
    nanosleep(&(struct timespec){0, 100000000L}, NULL);
    if (stat(path, &sb) == 0) nc = history(out_c, hc, 64);
  }
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status), "the child was not killed (status %d)", status);
  CHECK(nc >= 8, "no checkpoint at step 8 within 60 s");
  Losses lc = {0};
  o = options(ir, weights, data, out_c, &lc);
  o.tokens = (uint64_t)1000 * 4 * 32, o.resume = 1, o.max_steps = 8;
  rb_buf_free(&err);
  rc = tr_train(&o, &r, &err);
  CHECK(rc == RB_OK, "resume after kill -9: %s", err.data ? err.data : "?");
  /* the reference: the same budget uninterrupted for as many steps */
  Losses ld = {0};
  char out_d[600];
  snprintf(out_d, sizeof out_d, "%s/d", dir);
  TrTrainOptions od = options(ir, weights, data, out_d, &ld);
  od.tokens = o.tokens, od.max_steps = r.steps;
  rb_buf_free(&err);
  int rcd = tr_train(&od, &r, &err);
  double hd[64];
  int nd = rcd ? -1 : history(out_d, hd, 64), nr = history(out_c, hc, 64);
  same = nd > 0 && nr == nd;
  for (int i = 0; same && i < nd; i++) same = hc[i] == hd[i];
  printf("kill -9 at step >= 8, resumed to step %d: %s\n", nr, same ? "the same losses" : "DIFFERENT losses");
  CHECK(same, "after kill -9 and resume the losses differ (%d against %d steps)", nr, nd);

  /* a NaN at step 7 stops the run naming the step and the tensor; the step-4 checkpoint stays */
  Losses ln = {0};
  char out_n[600];
  snprintf(out_n, sizeof out_n, "%s/n", dir);
  o = options(ir, weights, data, out_n, &ln);
  o.test_nan_at_step = 7;
  rb_buf_free(&err);
  rc = tr_train(&o, &r, &err);
  printf("NaN run: %s\n", err.data ? err.data : "(no error)");
  CHECK(rc == RB_EUSER && err.data && strstr(err.data, "step 7") && strstr(err.data, "g of model.layers.0"),
        "a NaN did not stop the run naming the step and the tensor: %s", err.data ? err.data : "(no error)");
  double hn[64];
  int nn = history(out_n, hn, 64);
  CHECK(nn == 4, "after the NaN the checkpoint holds %d steps, expected the 4 before it", nn);

  /* a held-out shard is refused, naming it */
  snprintf(shard, sizeof shard, "%s/held.shard", data);
  write_shard(shard, 5000, TR_SPLIT_HELDOUT, 2);
  Losses le = {0};
  o = options(ir, weights, data, out_a, &le);
  rb_buf_free(&err);
  rc = tr_train(&o, &r, &err);
  CHECK(rc == RB_EUSER && err.data && strstr(err.data, "held.shard"), "a held-out shard was not refused: %s",
        err.data ? err.data : "(no error)");
  rb_buf_free(&err);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) printf("could not remove %s\n", dir);
  return CHECK_SUMMARY();
}
