/* test_train_step.c: the compiled training step of samples/tiny.ir on the GPU
 * against the hand-written CPU reference (tests/ref/ref_train.c): the signs,
 * the loss, every trainable gradient, and one optimizer step; with gamma 0
 * and with the hidden-state MSE. Also: a step repeated from the same state
 * gives the same bits. Fresh random weights and tokens on every run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "runtime/formats/formats.h"
#include "tests/common/check.h"
#include "tests/common/gpu.h"
#include "tests/common/rng.h"
#include "tests/common/train_weights.h"
#include "tests/ref/ref_train.h"
#include "trainer/trainer.h"

/* ||a - b|| / ||b|| over n values (b in double). */
static double rel_err(const float *a, const double *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    num += d * d, den += b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* x rounded to bf16 as the GPU's cvt.rn.bf16.f32 does, as a float. */
static float bf16(double x) { return rb_f32_from_bf16(rb_bf16_from_f32((float)x)); }

/* The GPU's Muon update of a first step, emulated with its bf16 roundings: u from the
 * gradient dW (N, K) and clip c, X = bf16(u / |u|) made wide, 5 Newton-Schulz steps with
 * every product rounded to bf16 as cuBLAS writes it; out (N, K) = the step's -lr 0.2 sqrt(max) X. */
static void muon_first_step_bf16(const float *dW, int N, int K, double c, double mu, double lr, double *out) {
  int tr = N > K, r = tr ? K : N, cc = tr ? N : K;
  size_t n = (size_t)N * K;
  double *u = malloc(n * 8), norm = 0;
  for (size_t i = 0; i < n; i++) {
    double g = c * dW[i], buf = (1 - mu) * g;
    u[i] = (1 - mu) * g + mu * buf;
    norm += u[i] * u[i];
  }
  norm = sqrt(norm);
  if (norm < 1e-7) norm = 1e-7;
  float *X = malloc(n * 4), *Xn = malloc(n * 4), *A = malloc((size_t)r * r * 4), *Bm = malloc((size_t)r * r * 4);
  for (int i = 0; i < N; i++)
    for (int j = 0; j < K; j++) {
      float v = bf16(u[(size_t)i * K + j] / norm);
      if (tr) X[(size_t)j * N + i] = v;
      else X[(size_t)i * K + j] = v;
    }
  for (int it = 0; it < 5; it++) {
    for (int i = 0; i < r; i++)
      for (int j = 0; j < r; j++) {
        double a = 0;
        for (int e = 0; e < cc; e++) a += (double)X[(size_t)i * cc + e] * X[(size_t)j * cc + e];
        A[(size_t)i * r + j] = bf16(a);
      }
    for (int i = 0; i < r; i++)
      for (int j = 0; j < r; j++) {
        double a = 0;
        for (int e = 0; e < r; e++) a += (double)A[(size_t)i * r + e] * A[(size_t)e * r + j];
        Bm[(size_t)i * r + j] = bf16(2.0315 * a - 4.7750 * A[(size_t)i * r + j]);
      }
    for (int i = 0; i < r; i++)
      for (int j = 0; j < cc; j++) {
        double a = 0;
        for (int e = 0; e < r; e++) a += (double)Bm[(size_t)i * r + e] * X[(size_t)e * cc + j];
        Xn[(size_t)i * cc + j] = bf16(a + 3.4445 * X[(size_t)i * cc + j]);
      }
    float *t = X;
    X = Xn, Xn = t;
  }
  double scale = lr * 0.2 * sqrt((double)(N > K ? N : K));
  for (int i = 0; i < N; i++)
    for (int j = 0; j < K; j++) out[(size_t)i * K + j] = -scale * (tr ? X[(size_t)j * N + i] : X[(size_t)i * K + j]);
  free(u), free(X), free(Xn), free(A), free(Bm);
}

typedef struct {
  const char *what;
  double worst;
  const char *worst_name;
} Worst;

static void track(Worst *w, double e, const char *name) {
  if (e > w->worst) w->worst = e, w->worst_name = name;
}

static int check_case(RtGpu *gpu, const char *samples, int B, int S, double gamma, uint64_t seed) {
  RefTrainModel m;
  if (ref_train_model_random(&m, ref_train_dims_tiny(), seed)) {
    printf("FAIL: reference model\n");
    return 1;
  }
  char wpath[256], ir[512];
  snprintf(wpath, sizeof wpath, "/tmp/rabit_train_step_%d.safetensors", (int)getpid());
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  if (write_weights(&m, wpath)) return 1;
  TrStepOptions so = {.ir = ir, .gamma = gamma, .weights = wpath, .batch = B, .seq = S};
  TrStep *st = NULL;
  RbBuf err = {0};
  int rc = tr_step_open(&st, gpu, &so, &err);
  CHECK(rc == RB_OK, "tr_step_open: %s", err.data ? err.data : "?");
  if (rc) {
    rb_buf_free(&err);
    ref_train_model_free(&m);
    return 1;
  }
  /* the reference's latent weights and scales on the GPU */
  int nw = tr_step_nweights(st);
  CHECK(nw == m.d.L * REF_NLIN, "%d trainable weights, expected %d", nw, m.d.L * REF_NLIN);
  for (int i = 0; i < nw; i++) {
    RefTrainLinear *q = ref_linear(&m, tr_step_weight(st, i, NULL, NULL, NULL), NULL, NULL);
    CHECK(q != NULL, "weight %s is not one of the reference's", tr_step_weight(st, i, NULL, NULL, NULL));
    if (!q) continue;
    tr_step_set(st, i, TR_PART_W, q->W);
    tr_step_set(st, i, TR_PART_G, q->g);
    tr_step_set(st, i, TR_PART_H, q->h);
  }
  int T = B * S;
  int32_t *tok = malloc((size_t)T * sizeof *tok);
  for (int t = 0; t < T; t++) tok[t] = (int32_t)(rnd() % (uint64_t)m.d.V);

  /* gradients, no update */
  TrStepResult r;
  TrStepHyper hp = {.lr_w = 0, .lr_s = 0, .t = 1, .update = 0};
  rc = tr_step_run(st, tok, &hp, &r, &err);
  CHECK(rc == RB_OK, "tr_step_run: %s", err.data ? err.data : "?");
  RefTrainGrads g;
  ref_train_grads_alloc(&g, m.d);
  RefTrainOptions ro = {.gamma = gamma, .frozen_signs = 0, .bf16_what = 1};
  double kl, mse[8];
  double loss = ref_train_loss(&m, tok, B, S, &ro, &g, &kl, mse);
  double lerr = fabs(r.loss - loss) / fabs(loss);
  printf("  B=%d S=%d gamma=%g: loss gpu %.6f ref %.6f (kl %.6f / %.6f), rel %.2e\n", B, S, gamma, r.loss, loss, r.kl,
         kl, lerr);
  CHECK(lerr < 1e-2, "loss %.6f against the reference's %.6f", r.loss, loss);
  Worst wg[3] = {{"dW", 0, ""}, {"dg", 0, ""}, {"dh", 0, ""}};
  RefTrainGrads gpu_g; /* the GPU's own gradients, for the optimizer's check */
  ref_train_grads_alloc(&gpu_g, m.d);
  int bit_mismatch = 0;
  for (int i = 0; i < nw; i++) {
    int l, j, N, K, k;
    const char *name = tr_step_weight(st, i, &N, &K, &k);
    RefTrainLinear *q = ref_linear(&m, name, &l, &j);
    if (!q) continue;
    size_t words = (size_t)cg_packed_words(K), nb = (size_t)k * N * words;
    uint32_t *bits = malloc(nb * 4);
    tr_step_get(st, i, TR_PART_BITS, bits);
    ref_derive(q, NULL);
    if (memcmp(bits, q->bits, nb * 4)) bit_mismatch++;
    free(bits);
    float *buf = malloc((size_t)N * K * 4);
    TrPart gp[3] = {TR_PART_DW, TR_PART_DG, TR_PART_DH};
    double *ref[3] = {g.dW[l][j], g.dg[l][j], g.dh[l][j]}, *mine[3] = {gpu_g.dW[l][j], gpu_g.dg[l][j], gpu_g.dh[l][j]};
    size_t cnt[3] = {(size_t)N * K, (size_t)k * N, (size_t)k * K};
    for (int p = 0; p < 3; p++) {
      tr_step_get(st, i, gp[p], buf);
      track(&wg[p], rel_err(buf, ref[p], cnt[p]), name);
      for (size_t e = 0; e < cnt[p]; e++) mine[p][e] = buf[e];
    }
    free(buf);
  }
  CHECK(bit_mismatch == 0, "%d weights' signs differ from the CPU derivation", bit_mismatch);
  for (int i = 0; i < 3; i++) {
    printf("    %-2s worst rel %.2e (%s)\n", wg[i].what, wg[i].worst, wg[i].worst_name);
    CHECK(wg[i].worst < 3e-2, "%s of %s: rel %.2e", wg[i].what, wg[i].worst_name, wg[i].worst);
  }

  /* determinism: the same step again gives the same bits */
  float *g1 = malloc((size_t)4 << 20), *g2 = malloc((size_t)4 << 20);
  TrStepResult r2;
  tr_step_get(st, 0, TR_PART_DW, g1);
  rc = tr_step_run(st, tok, &hp, &r2, &err);
  tr_step_get(st, 0, TR_PART_DW, g2);
  int N0, K0;
  tr_step_weight(st, 0, &N0, &K0, NULL);
  CHECK(rc == RB_OK && r2.loss == r.loss && !memcmp(g1, g2, (size_t)N0 * K0 * 4),
        "a repeated step differs: loss %.9g vs %.9g", r.loss, r2.loss);
  free(g1), free(g2);

  /* one optimizer step against the reference's, given the same (the GPU's) gradients: the
   * first AdamW step moves each scale by about lr sign(grad), so gradients that differ in
   * bf16 rounding would flip the signs of the near-zero ones */
  hp = (TrStepHyper){.lr_w = 2e-3, .lr_s = 1e-3, .t = 1, .update = 1};
  rc = tr_step_run(st, tok, &hp, &r, &err);
  CHECK(rc == RB_OK, "tr_step_run with update: %s", err.data ? err.data : "?");
  RefOptim ropt;
  ref_optim_init(&ropt, m.d, hp.lr_w, hp.lr_s); /* max_norm 1; its step counter is raised before use */
  double gn = 0;
  RefTrainModel before;
  ref_train_model_copy(&before, &m);
  ref_optim_step(&m, &gpu_g, &ropt, &gn);
  printf("    grad norm gpu %.6f ref %.6f\n", r.grad_norm, gn);
  CHECK(fabs(r.grad_norm - gn) / gn < 3e-2, "grad norm %.6f against %.6f", r.grad_norm, gn);
  Worst wu[3] = {{"W", 0, ""}, {"g", 0, ""}, {"h", 0, ""}};
  /* W: against the double reference loosely (Newton-Schulz runs in bf16 on the GPU), and tightly
   * against an emulation of the GPU's bf16 roundings below */
  const double tol_update[3] = {3e-1, 1e-4, 1e-4};
  Worst wb = {"W (bf16 emulation)", 0, ""};
  double clip = r.grad_norm > 1.0 ? 1.0 / (r.grad_norm + 1e-6) : 1.0;
  for (int i = 0; i < nw; i++) {
    int l, j, N, K, k;
    const char *name = tr_step_weight(st, i, &N, &K, &k);
    RefTrainLinear *q = ref_linear(&m, name, &l, &j), *q0 = &before.lin[l][j];
    if (!q) continue;
    size_t n[3] = {(size_t)N * K, (size_t)k * N, (size_t)k * K};
    float *now = malloc(n[0] * 4);
    double *delta = malloc(n[0] * 8);
    float *ref_now[3] = {q->W, q->g, q->h}, *ref_was[3] = {q0->W, q0->g, q0->h};
    TrPart parts[3] = {TR_PART_W, TR_PART_G, TR_PART_H};
    {
      double *emu = malloc(n[0] * 8);
      float *dW = malloc(n[0] * 4);
      for (size_t e = 0; e < n[0]; e++) dW[e] = (float)gpu_g.dW[l][j][e];
      muon_first_step_bf16(dW, N, K, clip, 0.95, hp.lr_w, emu);
      tr_step_get(st, i, TR_PART_W, now);
      for (size_t e = 0; e < n[0]; e++) now[e] -= q0->W[e];
      track(&wb, rel_err(now, emu, n[0]), name);
      free(emu), free(dW);
    }
    for (int p = 0; p < 3; p++) {
      tr_step_get(st, i, parts[p], now);
      /* compare the updates, not the values: the step is small against the weights */
      for (size_t e = 0; e < n[p]; e++) delta[e] = (double)ref_now[p][e] - ref_was[p][e], now[e] -= ref_was[p][e];
      track(&wu[p], rel_err(now, delta, n[p]), name);
    }
    free(now), free(delta);
  }
  for (int i = 0; i < 3; i++) {
    printf("    update of %-2s worst rel %.2e (%s)\n", wu[i].what, wu[i].worst, wu[i].worst_name);
    CHECK(wu[i].worst < tol_update[i], "the update of %s of %s: rel %.2e", wu[i].what, wu[i].worst_name, wu[i].worst);
  }
  printf("    update of %s worst rel %.2e (%s)\n", wb.what, wb.worst, wb.worst_name);
  CHECK(wb.worst < 6e-2, "the Muon update of %s against the bf16 emulation: rel %.2e", wb.worst_name, wb.worst);
  ref_train_model_free(&before);
  ref_optim_free(&ropt);
  ref_train_grads_free(&g);
  ref_train_grads_free(&gpu_g);
  free(tok);
  tr_step_close(st);
  ref_train_model_free(&m);
  unlink(wpath);
  rb_buf_free(&err);
  return 0;
}

/* Standard QAT (--method standard): one latent W_p a path, B_p = sign(W_p), each W_p receiving
 * dL/dW_hat. Against the reference in frozen-signs mode with B_p = sign(W_p) on random latents. */
static int check_standard(RtGpu *gpu, const char *samples, int B, int S, uint64_t seed) {
  RefTrainModel m;
  if (ref_train_model_random(&m, ref_train_dims_tiny(), seed)) return 1;
  char wpath[256], ir[512];
  snprintf(wpath, sizeof wpath, "/tmp/rabit_train_std_%d.safetensors", (int)getpid());
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  if (write_weights(&m, wpath)) return 1;
  TrStepOptions so = {.ir = ir, .method = TR_METHOD_STANDARD, .weights = wpath, .batch = B, .seq = S};
  TrStep *st = NULL;
  RbBuf err = {0};
  int rc = tr_step_open(&st, gpu, &so, &err);
  CHECK(rc == RB_OK, "tr_step_open (standard): %s", err.data ? err.data : "?");
  if (rc) return 1;
  int nw = tr_step_nweights(st);
  float *lat[REF_MAX_L * REF_NLIN] = {0};
  for (int i = 0; i < nw; i++) {
    int N, K, k;
    RefTrainLinear *q = ref_linear(&m, tr_step_weight(st, i, &N, &K, &k), NULL, NULL);
    CHECK(tr_step_latents(st, i) == k, "weight %d: %d latents, expected k = %d", i, tr_step_latents(st, i), k);
    if (!q) continue;
    size_t n = (size_t)k * N * K;
    lat[i] = malloc(n * 4);
    for (size_t e = 0; e < n; e++) lat[i][e] = e % 97 == 0 ? 0.0f : (float)(0.05 * (2 * unif() - 1));
    tr_sign_bits(lat[i], N, K, k, q->bits);
    tr_step_set(st, i, TR_PART_W, lat[i]);
    tr_step_set(st, i, TR_PART_G, q->g);
    tr_step_set(st, i, TR_PART_H, q->h);
  }
  int T = B * S;
  int32_t *tok = malloc((size_t)T * sizeof *tok);
  for (int t = 0; t < T; t++) tok[t] = (int32_t)(rnd() % (uint64_t)m.d.V);
  TrStepResult r;
  TrStepHyper hp = {.t = 1, .update = 0};
  rc = tr_step_run(st, tok, &hp, &r, &err);
  CHECK(rc == RB_OK, "tr_step_run (standard): %s", err.data ? err.data : "?");
  RefTrainGrads g;
  ref_train_grads_alloc(&g, m.d);
  RefTrainOptions ro = {.frozen_signs = 1, .bf16_what = 1};
  double kl, loss = ref_train_loss(&m, tok, B, S, &ro, &g, &kl, NULL);
  printf("  standard B=%d S=%d: loss gpu %.6f ref %.6f\n", B, S, r.loss, loss);
  CHECK(fabs(r.loss - loss) / loss < 1e-2, "standard: loss %.6f against %.6f", r.loss, loss);
  double worst = 0, norm2 = 0;
  int bad_bits = 0, bad_copies = 0;
  for (int i = 0; i < nw; i++) {
    int l, j, N, K, k;
    RefTrainLinear *q = ref_linear(&m, tr_step_weight(st, i, &N, &K, &k), &l, &j);
    if (!q) continue;
    size_t nk = (size_t)N * K, nb = (size_t)k * N * (size_t)cg_packed_words(K);
    uint32_t *bits = malloc(nb * 4);
    tr_step_get(st, i, TR_PART_BITS, bits);
    bad_bits += memcmp(bits, q->bits, nb * 4) != 0;
    free(bits);
    float *dw = malloc((size_t)k * nk * 4), *dg = malloc((size_t)k * N * 4), *dh = malloc((size_t)k * K * 4);
    tr_step_get(st, i, TR_PART_DW, dw), tr_step_get(st, i, TR_PART_DG, dg), tr_step_get(st, i, TR_PART_DH, dh);
    for (int p = 0; p < k; p++) {
      bad_copies += memcmp(dw + (size_t)p * nk, dw, nk * 4) != 0;
      double e = rel_err(dw + (size_t)p * nk, g.dW[l][j], nk);
      worst = e > worst ? e : worst;
    }
    double e = rel_err(dg, g.dg[l][j], (size_t)k * N);
    worst = e > worst ? e : worst;
    e = rel_err(dh, g.dh[l][j], (size_t)k * K);
    worst = e > worst ? e : worst;
    for (size_t x = 0; x < (size_t)k * nk; x++) norm2 += (double)dw[x] * dw[x];
    for (size_t x = 0; x < (size_t)k * N; x++) norm2 += (double)dg[x] * dg[x];
    for (size_t x = 0; x < (size_t)k * K; x++) norm2 += (double)dh[x] * dh[x];
    free(dw), free(dg), free(dh);
  }
  printf("    standard: gradients worst rel %.2e; signs %s; every W_p's gradient %s\n", worst,
         bad_bits ? "DIFFER" : "equal", bad_copies ? "DIFFERS" : "is dW_hat");
  CHECK(!bad_bits, "standard: %d weights' signs are not sign(W_p)", bad_bits);
  CHECK(!bad_copies, "standard: %d latents' gradients differ from dW_hat", bad_copies);
  CHECK(worst < 3e-2, "standard: gradients rel %.2e", worst);
  /* one update: every W_p moves by the Muon step of dW_hat; the norm counts the k copies */
  float *dw0[REF_MAX_L * REF_NLIN] = {0};
  for (int i = 0; i < nw; i++) {
    int N, K, k;
    tr_step_weight(st, i, &N, &K, &k);
    dw0[i] = malloc((size_t)k * N * K * 4);
    tr_step_get(st, i, TR_PART_DW, dw0[i]);
  }
  hp = (TrStepHyper){.lr_w = 2e-3, .lr_s = 1e-3, .t = 1, .update = 1};
  rc = tr_step_run(st, tok, &hp, &r, &err);
  CHECK(rc == RB_OK && fabs(r.grad_norm - sqrt(norm2)) / sqrt(norm2) < 1e-4, "standard: grad norm %.6f, expected %.6f",
        r.grad_norm, sqrt(norm2));
  double clip = r.grad_norm > 1.0 ? 1.0 / (r.grad_norm + 1e-6) : 1.0, wu = 0;
  for (int i = 0; i < nw; i++) {
    int N, K, k;
    tr_step_weight(st, i, &N, &K, &k);
    size_t nk = (size_t)N * K;
    double *emu = malloc(nk * 8);
    float *now = malloc((size_t)k * nk * 4);
    muon_first_step_bf16(dw0[i], N, K, clip, 0.95, hp.lr_w, emu);
    tr_step_get(st, i, TR_PART_W, now);
    for (int p = 0; p < k; p++) {
      for (size_t e = 0; e < nk; e++) now[(size_t)p * nk + e] -= lat[i][(size_t)p * nk + e];
      double e = rel_err(now + (size_t)p * nk, emu, nk);
      wu = e > wu ? e : wu;
    }
    free(emu), free(now), free(dw0[i]), free(lat[i]);
  }
  printf("    standard: every W_p's update against the bf16 Muon emulation, worst rel %.2e\n", wu);
  CHECK(wu < 6e-2, "standard: W_p updates rel %.2e", wu);
  ref_train_grads_free(&g);
  free(tok);
  tr_step_close(st);
  ref_train_model_free(&m);
  unlink(wpath);
  rb_buf_free(&err);
  return 0;
}

int main(int argc, char **argv) {
  char arch[16];
  RtGpu *gpu = gpu_open_or_skip(arch);
  const char *samples = argc > 1 ? argv[1] : "samples";
  test_rng = 0x1234567ull ^ (uint64_t)getpid() << 20;
  printf("train step on %s (%s)\n", rt_gpu_name(gpu), arch);
  check_case(gpu, samples, 2, 8, 0.0, rnd());
  check_case(gpu, samples, 2, 33, 10.0, rnd());
  check_case(gpu, samples, 4, 64, 0.0, rnd());
  check_standard(gpu, samples, 2, 16, rnd());
  rt_gpu_close(gpu);
  return CHECK_SUMMARY();
}
