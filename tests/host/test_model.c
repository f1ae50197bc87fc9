/* test_model.c: the executor on the host target against the float64
 * reference decoder (tests/ref/ref_model.c), on samples/tiny.ir with fresh
 * random weights written by the safetensors writer (tests/gpu/test_model.c's
 * cases, on this CPU):
 *  - 2-bit: prefill of 7 tokens (in one call, and in chunks of 4 + 3), then
 *    4 decode steps at successive positions over the KV cache;
 *  - fp16: the same model with every linear dense (the host's dense linear);
 *  - the NLL of a window (rt_model_nll, the host's nll kernel) against the
 *    reference's log-softmax;
 *  - the commands: `rabit run --target host --weights W --logits-out` (the
 *    prompt's logits), and `rabit ppl --target host` on a small text, whose
 *    perplexity is compared with the reference's over the same windows.
 * Tolerances: logits by relative L2 2e-2 (fp16 activations through 2 layers,
 * the GPU test's); mean NLL within 0.02 nats of the reference's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/formats/formats.h"
#include "runtime/runtime.h"
#include "runtime/text/text.h"
#include "tests/common/rng.h"
#include "tests/common/tiny_model.h"
#include "tests/host/util.h"
#include "tests/ref/ref.h"

static const double TOL = 2e-2, NLL_TOL = 0.02;
static const char *samples, *rabit;

static void check_logits(const char *what, const double *got, const double *want, size_t n) {
  double e = ref_rel_l2(got, want, n);
  printf("%s %-40s rel L2 %.2e\n", e <= TOL ? "ok  " : "FAIL", what, e);
  CHECK(e <= TOL, "%s: rel L2 %.3g", what, e);
}

/* The IR compiled in process for the host and opened on this CPU, as `rabit run --target host` does. */
static int open_model(int dense, const char *weights, int max_tokens, RtPlan **plan, RtProgram **pr, RtModel **m) {
  char ir[4096];
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  RbBuf err = {0};
  RtCompileOptions co = {.path = ir, .fe = {0, dense}, .target = &cg_target_host, .stop = RT_STAGE_PLAN,
                         .arch = "host", .max_ctx = 64, .jobs = 2};
  RtCompiled c;
  int rc = rt_compile(&co, &c, &err);
  *plan = rt_compiled_take_plan(&c);
  if (!rc) rc = rt_program_open_host(*plan, 2, pr, &err);
  RtModelOptions mo = {max_tokens, 0, 0};
  if (!rc) rc = rt_model_open(*pr, weights, &mo, m, &err);
  CHECK(rc == RB_OK, "open: %s%s", c.diag.data ? c.diag.data : "", err.data ? err.data : "");
  rt_compiled_free(&c);
  rb_buf_free(&err);
  return rc;
}

/* -log softmax(logits)[target] in double. */
static double ref_nll(const double *logits, int target) {
  double mx = logits[0], s = 0;
  for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
  for (int i = 0; i < V; i++) s += exp(logits[i] - mx);
  return log(s) + mx - logits[target];
}

static void run_case(const char *file, int dense, const RefModel *ref, const char *tag) {
  enum { T = 7, STEPS = 4 };
  int tokens[T + STEPS];
  int32_t t32[T + STEPS];
  for (int i = 0; i < T + STEPS; i++) t32[i] = tokens[i] = (int)(rnd() % V);
  double *want = malloc((size_t)(T + STEPS) * V * sizeof *want), *got = malloc((size_t)T * V * sizeof *got);
  ref_model_forward(ref, tokens, T + STEPS, want); /* causal: row t depends on tokens 0..t only */
  for (int chunked = 0; chunked < 2; chunked++) {
    RtPlan *plan = NULL;
    RtProgram *pr = NULL;
    RtModel *m = NULL;
    char what[96];
    if (open_model(dense, file, chunked ? 4 : 16, &plan, &pr, &m) == RB_OK) {
      if (!chunked) {
        int rc = rt_model_forward(m, t32, T, 0);
        CHECK(rc == RB_OK, "forward: %s", rt_model_error(m));
        tiny_logits(m, 0, T, got);
        snprintf(what, sizeof what, "%s prefill T=%d", tag, T);
        check_logits(what, got, want, (size_t)T * V);
      } else {
        int rc = rt_model_forward(m, t32, 4, 0) || rt_model_forward(m, t32 + 4, 3, 4);
        CHECK(rc == RB_OK, "forward: %s", rt_model_error(m));
        tiny_logits(m, 0, 3, got);
        snprintf(what, sizeof what, "%s prefill in chunks 4+3", tag);
        check_logits(what, got, want + (size_t)4 * V, 3 * V);
      }
      for (int st = 0; st < STEPS; st++) {
        int rc = rt_model_decode(m, t32[T + st], T + st);
        CHECK(rc == RB_OK, "decode: %s", rt_model_error(m));
        tiny_logits(m, 0, 1, got);
        snprintf(what, sizeof what, "%s%s decode pos %d", tag, chunked ? " (after chunks)" : "", T + st);
        check_logits(what, got, want + (size_t)(T + st) * V, V);
      }
      if (!chunked) { /* the window's NLL on the host's nll kernel, in chunks of 16 */
        enum { W = 40 };
        int wt[W];
        int32_t w32[W];
        for (int i = 0; i < W; i++) w32[i] = wt[i] = (int)(rnd() % V);
        double *lw = malloc((size_t)W * V * sizeof *lw), sum = 0, want_sum = 0;
        ref_model_forward(ref, wt, W, lw);
        for (int i = 0; i + 1 < W; i++) want_sum += ref_nll(lw + (size_t)i * V, wt[i + 1]);
        int rc = rt_model_nll(m, w32, W, &sum, NULL);
        CHECK(rc == RB_OK, "nll: %s", rt_model_error(m));
        double d = fabs(sum - want_sum) / (W - 1);
        printf("%s %-40s mean NLL %.4f vs %.4f\n", d <= NLL_TOL ? "ok  " : "FAIL", tag, sum / (W - 1),
               want_sum / (W - 1));
        CHECK(d <= NLL_TOL, "%s window NLL: %.4f vs %.4f", tag, sum / (W - 1), want_sum / (W - 1));
        free(lw);
      }
    }
    rt_model_close(m);
    rt_program_close(pr);
    rt_plan_free(plan);
  }
  free(want), free(got);
}

/* `rabit run --target host`: the prompt's logits from --logits-out against the reference. */
static void run_command(const char *file, const RefModel *ref, const char *dir) {
  enum { T = 5 };
  int tokens[T];
  for (int i = 0; i < T; i++) tokens[i] = (int)(rnd() % V);
  char cmd[20000], out[4200];
  snprintf(out, sizeof out, "%s/logits.f32", dir);
  snprintf(cmd, sizeof cmd, "'%s' run '%s/tiny.ir' --target host --threads 2 --weights '%s' --tokens %d,%d,%d,%d,%d "
           "-n 3 --quiet --logits-out '%s' > /dev/null", rabit, samples, file, tokens[0], tokens[1], tokens[2],
           tokens[3], tokens[4], out);
  int rc = system(cmd);
  CHECK(rc == 0, "rabit run --target host: status %d", rc);
  double want[T * V], got[T * V];
  float f[T * V];
  FILE *fp = fopen(out, "rb");
  size_t n = fp ? fread(f, sizeof *f, T * V, fp) : 0;
  if (fp) fclose(fp);
  CHECK(n == T * V, "--logits-out: %zu floats, want %d", n, T * V);
  for (int i = 0; i < T * V; i++) got[i] = i < (int)n ? f[i] : NAN;
  ref_model_forward(ref, tokens, T, want);
  check_logits("rabit run --target host (--logits-out)", got, want, (size_t)T * V);
}

/* A 256-token vocabulary for the tiny model: the first 256 tokens of the
 * tokenizer test's SmolLM2 vocabulary (its specials and single bytes), no
 * merges, so every id of a plain text is below tiny's 256. */
static int write_vocab(const char *from, const char *to) {
  FILE *in = fopen(from, "r"), *out = fopen(to, "w");
  char line[4096];
  int ok = in && out;
  for (int i = 1; ok && i <= 262 && fgets(line, sizeof line, in); i++)
    fputs(i == 6 ? "tokens 256\n" : line, out);
  if (out) fputs("merges 0\n", out);
  if (in) fclose(in);
  if (out && fclose(out)) ok = 0;
  return ok;
}

/* `rabit ppl --target host` on a small text: its perplexity against the
 * reference's over the same windows (the text tokenized by the same vocabulary). */
static void ppl_command(const char *file, const RefModel *ref, const char *dir, const char *big_vocab) {
  enum { CTX = 32, WINDOWS = 3 };
  char vocab[4200], text[4200], cmd[30000], outp[4200];
  snprintf(vocab, sizeof vocab, "%s/vocab256.txt", dir);
  snprintf(text, sizeof text, "%s/text.txt", dir);
  snprintf(outp, sizeof outp, "%s/ppl.out", dir);
  CHECK(write_vocab(big_vocab, vocab), "writing %s", vocab);
  FILE *t = fopen(text, "w");
  for (int i = 0; t && i < 12; i++) fprintf(t, "It is a truth universally acknowledged, in the year %d.\n", i);
  if (t) fclose(t);
  RtTokenizer *tok = NULL;
  RbBuf err = {0};
  RbBuf body = {0};
  int32_t *ids = NULL;
  size_t nt = 0;
  if (rt_tok_load_vocab(vocab, &tok, &err) || rb_read_file_max(text, 1 << 20, &body) ||
      rt_tok_encode(tok, body.data, body.len, &ids, &nt)) {
    CHECK(0, "tokenizing %s: %s", text, err.data ? err.data : "?");
    goto done;
  }
  CHECK(nt >= CTX * WINDOWS, "%zu tokens, want %d", nt, CTX * WINDOWS);
  double sum = 0;
  for (int w = 0; w < WINDOWS && nt >= CTX * WINDOWS; w++) {
    int win[CTX];
    for (int i = 0; i < CTX; i++) win[i] = ids[w * CTX + i];
    double *lg = malloc((size_t)CTX * V * sizeof *lg);
    ref_model_forward(ref, win, CTX, lg);
    for (int i = 0; i + 1 < CTX; i++) sum += ref_nll(lg + (size_t)i * V, win[i + 1]);
    free(lg);
  }
  double want = exp(sum / (WINDOWS * (CTX - 1)));
  snprintf(cmd, sizeof cmd, "'%s' ppl '%s/tiny.ir' --target host --threads 2 --weights '%s' --text '%s' --tokenizer '%s' "
           "--ctx %d --max-windows %d --quiet > '%s'", rabit, samples, file, text, vocab, CTX, WINDOWS, outp);
  int rc = system(cmd);
  CHECK(rc == 0, "rabit ppl --target host: status %d", rc);
  FILE *o = fopen(outp, "r");
  double got = NAN;
  if (!o || fscanf(o, "perplexity %lf", &got) != 1) got = NAN;
  if (o) fclose(o);
  double d = fabs(log(got) - log(want)); /* the mean NLL's difference */
  printf("%s %-40s ppl %.4f vs reference %.4f\n", d <= NLL_TOL ? "ok  " : "FAIL", "rabit ppl --target host", got,
         want);
  CHECK(isfinite(got) && d <= NLL_TOL, "rabit ppl: %.4f vs %.4f", got, want);
done:
  rb_free(ids);
  rt_tok_free(tok);
  rb_buf_free(&err);
  rb_buf_free(&body);
}

int main(int argc, char **argv) {
  double t0 = rb_now_ms();
  if (argc != 4) return fprintf(stderr, "usage: host_model RABIT SAMPLES_DIR VOCAB.txt\n"), 2;
  rabit = argv[1], samples = argv[2];
  test_rng = 0xD1B54A32D192ED03ull;
  char *dir = hu_tmpdir("host-model"), cache[4200];
  snprintf(cache, sizeof cache, "%s/cache", dir);
  setenv("RABIT_CACHE_DIR", cache, 1);
  RbBuf err = {0};

  TinyModel t;
  tiny_make(&t);
  for (int dense = 0; dense < 2; dense++) {
    char file[4300];
    snprintf(file, sizeof file, "%s/tiny-%s.safetensors", dir, dense ? "fp16" : "k");
    if (tiny_write(&t, dense, file, &err)) {
      CHECK(0, "writing %s: %s", file, err.data ? err.data : "");
      continue;
    }
    const RefModel *rm = dense ? &t.dense : &t.model; /* the fp16 file holds the dense reconstructions */
    run_case(file, dense, rm, dense ? "fp16" : "2-bit");
    if (!dense) {
      run_command(file, rm, dir);
      ppl_command(file, rm, dir, argv[3]);
    }
  }
  tiny_free(&t);
  rb_buf_free(&err);
  hu_rm_rf(dir);
  rb_free(dir);
  return hu_finish("host_model", t0);
}
