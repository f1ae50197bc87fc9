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
#include "tests/host/util.h"
#include "tests/ref/ref.h"

enum { V = 256, D = 64, F = 160, L = 2, H = 4, HKV = 2, HD = 16 };
static const double TOL = 2e-2, NLL_TOL = 0.02;
static const char *samples, *rabit;
static float fp16(float v) { return rb_f32_from_f16(rb_f16_from_f32(v)); }

static void check_logits(const char *what, const double *got, const double *want, size_t n) {
  double e = ref_rel_l2(got, want, n);
  printf("%s %-40s rel L2 %.2e\n", e <= TOL ? "ok  " : "FAIL", what, e);
  CHECK(e <= TOL, "%s: rel L2 %.3g", what, e);
}

/* A random linear of the tiny model, packed and as its dense W_hat (for the fp16 file). */
typedef struct {
  RefLinear r;
  float *what;
} Lin;

static void make_linear(Lin *l, int N, int K, int paths) {
  int8_t *signs = malloc((size_t)paths * N * K);
  for (size_t i = 0; i < (size_t)paths * N * K; i++) signs[i] = (rnd() & 1) ? 1 : -1;
  uint32_t *bits = calloc((size_t)paths * N * cg_packed_words(K), 4);
  ref_pack_signs(bits, signs, paths, N, K);
  float *g = malloc((size_t)paths * N * 4), *h = malloc((size_t)paths * K * 4);
  for (int i = 0; i < paths * N; i++) g[i] = fp16((float)(0.5 + unif()) / sqrtf((float)K * paths));
  for (int i = 0; i < paths * K; i++) h[i] = fp16((float)(0.5 + unif()));
  l->what = calloc((size_t)N * K, 4);
  for (int p = 0; p < paths; p++)
    for (int n = 0; n < N; n++)
      for (int k = 0; k < K; k++)
        l->what[(size_t)n * K + k] += g[p * N + n] * signs[((size_t)p * N + n) * K + k] * h[p * K + k];
  for (size_t i = 0; i < (size_t)N * K; i++) l->what[i] = fp16(l->what[i]);
  free(signs);
  l->r = (RefLinear){N, K, paths, bits, g, h, NULL};
}

static void add_f16(RtStWriter *w, const char *name, const float *x, int rank, const int64_t *shape) {
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)shape[i];
  uint16_t *h = malloc(n * 2);
  for (size_t i = 0; i < n; i++) h[i] = rb_f16_from_f32(x[i]);
  rt_st_writer_add(w, name, RT_F16, rank, shape, h);
  free(h);
}

static void add_linear(RtStWriter *w, const char *base, const Lin *l, int dense) {
  char name[256];
  const RefLinear *r = &l->r;
  if (dense) {
    int64_t s[2] = {r->N, r->K};
    cg_dense_name(name, sizeof name, base);
    add_f16(w, name, l->what, 2, s);
    return;
  }
  int64_t sb[3], sg[3], sh[3];
  cg_packed_shape(CG_PACKED_BITS, r->paths, r->N, r->K, sb);
  cg_packed_shape(CG_PACKED_G, r->paths, r->N, r->K, sg);
  cg_packed_shape(CG_PACKED_H, r->paths, r->N, r->K, sh);
  cg_packed_name(name, sizeof name, base, CG_PACKED_BITS);
  rt_st_writer_add(w, name, RT_I32, 3, sb, r->bits);
  cg_packed_name(name, sizeof name, base, CG_PACKED_G);
  add_f16(w, name, r->g, 2, sg);
  cg_packed_name(name, sizeof name, base, CG_PACKED_H);
  add_f16(w, name, r->h, 2, sh);
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

static void logits_of(RtModel *m, int row0, int n, double *out) {
  float *f = malloc((size_t)n * V * 4);
  if (rt_model_logits(m, row0, n, f)) memset(f, 0xff, (size_t)n * V * 4); /* NaN: fails the check */
  for (size_t i = 0; i < (size_t)n * V; i++) out[i] = f[i];
  free(f);
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
        logits_of(m, 0, T, got);
        snprintf(what, sizeof what, "%s prefill T=%d", tag, T);
        check_logits(what, got, want, (size_t)T * V);
      } else {
        int rc = rt_model_forward(m, t32, 4, 0) || rt_model_forward(m, t32 + 4, 3, 4);
        CHECK(rc == RB_OK, "forward: %s", rt_model_error(m));
        logits_of(m, 0, 3, got);
        snprintf(what, sizeof what, "%s prefill in chunks 4+3", tag);
        check_logits(what, got, want + (size_t)4 * V, 3 * V);
      }
      for (int st = 0; st < STEPS; st++) {
        int rc = rt_model_decode(m, t32[T + st], T + st);
        CHECK(rc == RB_OK, "decode: %s", rt_model_error(m));
        logits_of(m, 0, 1, got);
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

  /* tiny.ir: q, k, o, gate, up have 2 paths; v 3; down 1; tied embeddings. */
  float *embed = malloc((size_t)V * D * 4), *fnorm = malloc(D * 4);
  for (int i = 0; i < V * D; i++) embed[i] = fp16((float)(2 * unif() - 1));
  for (int i = 0; i < D; i++) fnorm[i] = fp16((float)(0.5 + unif()));
  RefLayer layers[L];
  Lin lin[L][7];
  float *norms[L][2];
  static const int shape[7][3] = {{D, D, 2}, {HKV * HD, D, 2}, {HKV * HD, D, 3}, {D, D, 2},
                                  {F, D, 2}, {F, D, 2},        {D, F, 1}};
  for (int l = 0; l < L; l++) {
    for (int j = 0; j < 7; j++) make_linear(&lin[l][j], shape[j][0], shape[j][1], shape[j][2]);
    for (int j = 0; j < 2; j++) {
      norms[l][j] = malloc(D * 4);
      for (int i = 0; i < D; i++) norms[l][j][i] = fp16((float)(0.5 + unif()));
    }
    layers[l] = (RefLayer){norms[l][0], norms[l][1], lin[l][0].r, lin[l][1].r, lin[l][2].r, lin[l][3].r,
                           lin[l][4].r, lin[l][5].r, lin[l][6].r};
  }
  RefModel ref = {V, D, F, L, H, HKV, HD, 1e-5f, 10000.0f, embed, fnorm, embed, layers};
  static const char *const names[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  for (int dense = 0; dense < 2; dense++) {
    RtStWriter *w = NULL;
    rt_st_writer_new(&w);
    int64_t se[2] = {V, D}, sn[1] = {D};
    add_f16(w, "model.embed_tokens.weight", embed, 2, se);
    rt_st_writer_add(w, "model.norm.weight", RT_F32, 1, sn, fnorm);
    for (int l = 0; l < L; l++) {
      char base[128];
      snprintf(base, sizeof base, "model.layers.%d.input_layernorm.weight", l);
      rt_st_writer_add(w, base, RT_F32, 1, sn, norms[l][0]);
      snprintf(base, sizeof base, "model.layers.%d.post_attention_layernorm.weight", l);
      rt_st_writer_add(w, base, RT_F32, 1, sn, norms[l][1]);
      for (int j = 0; j < 7; j++) {
        snprintf(base, sizeof base, "model.layers.%d.%s", l, names[j]);
        add_linear(w, base, &lin[l][j], dense);
      }
    }
    char file[4300];
    snprintf(file, sizeof file, "%s/tiny-%s.safetensors", dir, dense ? "fp16" : "k");
    if (rt_st_writer_finish(w, file, &err)) {
      CHECK(0, "writing %s: %s", file, err.data ? err.data : "");
      continue;
    }
    /* The fp16 run reads the dense reconstructions: the same function. */
    RefLayer dl[L];
    for (int l = 0; l < L && dense; l++) {
      dl[l] = layers[l];
      RefLinear *rs[7] = {&dl[l].q, &dl[l].k, &dl[l].v, &dl[l].o, &dl[l].gate, &dl[l].up, &dl[l].down};
      for (int j = 0; j < 7; j++) rs[j]->paths = 0, rs[j]->dense = lin[l][j].what;
    }
    RefModel rm = ref;
    if (dense) rm.layer = dl;
    run_case(file, dense, &rm, dense ? "fp16" : "2-bit");
    if (!dense) {
      run_command(file, &rm, dir);
      ppl_command(file, &rm, dir, argv[3]);
    }
  }
  for (int l = 0; l < L; l++) {
    for (int j = 0; j < 7; j++)
      free((void *)lin[l][j].r.bits), free((void *)lin[l][j].r.g), free((void *)lin[l][j].r.h), free(lin[l][j].what);
    free(norms[l][0]), free(norms[l][1]);
  }
  free(embed), free(fnorm);
  rb_buf_free(&err);
  hu_rm_rf(dir);
  rb_free(dir);
  return hu_finish("host_model", t0);
}
