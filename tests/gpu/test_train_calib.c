/* test_train_calib.c: the function-preserving initialization's calibration on
 * samples/tiny.ir with random weights: the cross-entropy kernel against a
 * double log-softmax (targets < 0 give zero rows); the statistics (mean |x| of
 * layer 0's q_proj input, recomputed on the CPU from the embedding and the
 * norm); with exponents 0 the scales are exactly rabit quantize's unweighted
 * fit of the same rounds (tr_ptq_linear on the CPU); with 0.5 they move, stay
 * finite and positive, and a second calibration repeats them bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "tests/common/check.h"
#include "tests/common/gpu.h"
#include "tests/common/launch.h"
#include "tests/common/rng.h"
#include "tests/common/train_weights.h"
#include "trainer/trainer.h"

static float bf16_round(float f) { return rb_f32_from_bf16(rb_bf16_from_f32(f)); }

/* The CE kernel through the same path the trainer uses: built with NVRTC and launched. */
static void check_ce(RtGpu *gpu, const char *arch, int T, int V) {
  CgKernel k;
  memset(&k, 0, sizeof k);
  k.op.kind = CG_CE_LOSS, k.op.vocab = V;
  RtModule *mod = NULL;
  RtFunction fn = NULL;
  if (test_build_load(gpu, arch, &k, &mod, &fn, NULL)) {
    CHECK(0, "ce_loss V=%d did not build", V);
    return;
  }
  size_t n = (size_t)T * V;
  float *lg = malloc(n * 4), *d = malloc(n * 4), *rl = malloc((size_t)T * 4);
  int32_t *tg = malloc((size_t)T * 4);
  for (size_t i = 0; i < n; i++) lg[i] = (float)(4 * unif() - 2);
  for (int t = 0; t < T; t++) tg[t] = t % 5 == 4 ? -1 : (int32_t)(rnd() % (uint64_t)V);
  RtDevPtr dl, dd, dr, dt;
  rt_mem_alloc(gpu, &dl, n * 4), rt_mem_alloc(gpu, &dd, n * 4), rt_mem_alloc(gpu, &dr, (size_t)T * 4);
  rt_mem_alloc(gpu, &dt, (size_t)T * 4);
  rt_memcpy_htod(gpu, dl, lg, n * 4), rt_memcpy_htod(gpu, dt, tg, (size_t)T * 4);
  CgCeLossArgs a = {dd, dr, dl, dt, T, 0.5f};
  CgArgv av;
  cg_ce_loss_argv(&a, &av);
  CgLaunch L = test_launch(&k, T);
  int rc = rt_launch(gpu, fn, L.grid, L.block, L.smem, NULL, av.v);
  if (!rc) rc = rt_memcpy_dtoh(gpu, d, dd, n * 4);
  if (!rc) rc = rt_memcpy_dtoh(gpu, rl, dr, (size_t)T * 4);
  CHECK(rc == RB_OK, "ce_loss launch: %s", rt_gpu_error(gpu));
  double worst_l = 0, worst_g = 0;
  for (int t = 0; t < T && !rc; t++) {
    const float *r = lg + (size_t)t * V;
    double m = -1e30, z = 0;
    for (int v = 0; v < V; v++) m = r[v] > m ? r[v] : m;
    for (int v = 0; v < V; v++) z += exp(r[v] - m);
    double lse = m + log(z), loss = tg[t] < 0 ? 0 : lse - r[tg[t]];
    worst_l = fmax(worst_l, fabs(rl[t] - loss));
    for (int v = 0; v < V; v++) {
      double want = tg[t] < 0 ? 0 : 0.5 * (exp(r[v] - lse) - (v == tg[t]));
      worst_g = fmax(worst_g, fabs(d[(size_t)t * V + v] - want));
    }
  }
  printf("  ce_loss T=%d V=%d: loss max err %.2e, gradient max err %.2e\n", T, V, worst_l, worst_g);
  CHECK(worst_l < 1e-4 && worst_g < 1e-6, "ce_loss V=%d: loss err %.2e, gradient err %.2e", V, worst_l, worst_g);
  rt_mem_free(gpu, dl), rt_mem_free(gpu, dd), rt_mem_free(gpu, dr), rt_mem_free(gpu, dt);
  rt_module_unload(mod);
  free(lg), free(d), free(rl), free(tg);
}

int main(int argc, char **argv) {
  char arch[16];
  RtGpu *gpu = gpu_open_or_skip(arch);
  const char *samples = argc > 1 ? argv[1] : "samples";
  test_rng ^= (uint64_t)getpid() << 12;
  check_ce(gpu, arch, 37, 256);
  check_ce(gpu, arch, 9, 49152);

  RefTrainModel m;
  ref_train_model_random(&m, ref_train_dims_tiny(), rnd());
  char wpath[256], ir[512];
  snprintf(wpath, sizeof wpath, "/tmp/rabit_train_calib_%d.safetensors", (int)getpid());
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  if (write_weights(&m, wpath)) return 1;
  const int B = 2, S = 32, T = B * S, batches = 3, rounds = 2;
  TrStepOptions so = {.ir = ir, .weights = wpath, .batch = B, .seq = S, .ptq_rounds = rounds};
  TrStep *st = NULL;
  RbBuf err = {0};
  int rc = tr_step_open(&st, gpu, &so, &err);
  CHECK(rc == RB_OK, "tr_step_open: %s", err.data ? err.data : "?");
  if (rc) return CHECK_SUMMARY();
  int32_t *tok = malloc((size_t)batches * T * sizeof *tok);
  for (int i = 0; i < batches * T; i++) tok[i] = (int32_t)(rnd() % (uint64_t)m.d.V);

  /* exponents 0: the weights are all 1, so the fit is the unweighted one of the same rounds */
  TrInitOptions io = {.a = 0, .b = 0, .rounds = rounds};
  TrInitStats stats;
  rc = tr_step_init_rabit(st, tok, batches, &io, &stats, &err);
  CHECK(rc == RB_OK, "init (a = b = 0): %s", err.data ? err.data : "?");
  printf("  calibration: %llu tokens, FP cross-entropy %.4f (log V = %.4f)\n", (unsigned long long)stats.tokens,
         stats.ce, log((double)m.d.V));
  CHECK(isfinite(stats.ce) && stats.ce > 0, "cross-entropy %g", stats.ce);
  int nw = tr_step_nweights(st), differ = 0;
  for (int i = 0; i < nw; i++) {
    int N, K, k;
    RefTrainLinear *q = ref_linear(&m, tr_step_weight(st, i, &N, &K, &k), NULL, NULL);
    if (!q) continue;
    float *g = malloc((size_t)k * N * 4), *h = malloc((size_t)k * K * 4), *g0 = malloc((size_t)k * N * 4),
          *h0 = malloc((size_t)k * K * 4);
    uint32_t *bits = malloc((size_t)k * N * (size_t)cg_packed_words(K) * 4);
    TrPtqOptions po = {.rounds = rounds};
    tr_ptq_linear(q->dense, N, K, k, &po, bits, g0, h0, NULL, &err);
    tr_step_get(st, i, TR_PART_G, g), tr_step_get(st, i, TR_PART_H, h);
    differ += memcmp(g, g0, (size_t)k * N * 4) || memcmp(h, h0, (size_t)k * K * 4);
    free(g), free(h), free(g0), free(h0), free(bits);
  }
  CHECK(differ == 0, "with exponents 0, %d weights' scales differ from the unweighted fit", differ);

  /* the statistics: sum |x| of layer 0's q_proj input h = rmsnorm(bf16(embed[tok])) over the batches */
  int q0 = -1;
  for (int i = 0; i < nw; i++)
    if (!strcmp(tr_step_weight(st, i, NULL, NULL, NULL), "model.layers.0.self_attn.q_proj")) q0 = i;
  CHECK(q0 >= 0, "no model.layers.0.self_attn.q_proj");
  if (q0 >= 0) {
    int D = m.d.D;
    float *sdy = malloc((size_t)D * 4), *sx = malloc((size_t)D * 4);
    double *want = calloc((size_t)D, sizeof *want), worst = 0, dy_min = 1e30;
    tr_step_calib_sums(st, q0, sdy, sx);
    for (int t = 0; t < batches * T; t++) {
      const float *e = m.embed + (size_t)tok[t] * D;
      double ms = 0;
      for (int d = 0; d < D; d++) ms += (double)bf16_round(e[d]) * bf16_round(e[d]);
      double r = 1.0 / sqrt(ms / D + m.d.eps);
      for (int d = 0; d < D; d++) want[d] += fabs(bf16_round(e[d]) * r * m.norm1[0][d]);
    }
    for (int d = 0; d < D; d++) worst = fmax(worst, fabs(sx[d] - want[d]) / want[d]), dy_min = fmin(dy_min, sdy[d]);
    printf("  sum |x| of q_proj's input against the CPU: worst rel %.2e; sum |dy| min %.3g\n", worst, dy_min);
    CHECK(worst < 1e-4, "sum |x|: rel %.2e", worst);
    CHECK(dy_min > 0 && isfinite(dy_min), "sum |dy| has a zero or non-finite channel: %g", dy_min);
    free(sdy), free(sx), free(want);
  }

  /* exponents 0.5: the scales move, stay finite and >= 0, and repeat bit for bit */
  io = (TrInitOptions){.a = 0.5, .b = 0.5, .rounds = rounds};
  float *first = NULL;
  size_t total = 0;
  for (int i = 0; i < nw; i++) {
    int N, K, k;
    tr_step_weight(st, i, &N, &K, &k);
    total += (size_t)k * (N + K);
  }
  for (int run = 0; run < 2; run++) {
    rc = tr_step_init_rabit(st, tok, batches, &io, &stats, &err);
    CHECK(rc == RB_OK, "init (a = b = 0.5): %s", err.data ? err.data : "?");
    float *all = malloc(total * 4), *at = all;
    int bad = 0;
    for (int i = 0; i < nw; i++) {
      int N, K, k;
      tr_step_weight(st, i, &N, &K, &k);
      tr_step_get(st, i, TR_PART_G, at), at += (size_t)k * N;
      tr_step_get(st, i, TR_PART_H, at), at += (size_t)k * K;
    }
    for (size_t e = 0; e < total; e++) bad += !(all[e] >= 0) || !isfinite(all[e]);
    CHECK(bad == 0, "%d scales not finite or negative", bad);
    if (!first) first = all;
    else {
      CHECK(!memcmp(first, all, total * 4), "a second calibration gives other scales");
      free(all);
    }
  }
  free(first);

  /* step 0 is the PTQ model: the signs the step derives from the file's W and the calibrated scales
   * are the bits the PTQ export writes (tr_derive_bits, the CPU rule) */
  TrStepResult sr;
  TrStepHyper hp = {.t = 1, .update = 0};
  rc = tr_step_run(st, tok, &hp, &sr, &err);
  int bits_differ = 0;
  for (int i = 0; !rc && i < nw; i++) {
    int N, K, k;
    RefTrainLinear *q = ref_linear(&m, tr_step_weight(st, i, &N, &K, &k), NULL, NULL);
    if (!q) continue;
    size_t nb = (size_t)k * N * (size_t)cg_packed_words(K);
    float *g = malloc((size_t)k * N * 4), *h = malloc((size_t)k * K * 4);
    uint32_t *gpu_bits = malloc(nb * 4), *cpu_bits = malloc(nb * 4);
    tr_step_get(st, i, TR_PART_G, g), tr_step_get(st, i, TR_PART_H, h), tr_step_get(st, i, TR_PART_BITS, gpu_bits);
    tr_derive_bits(q->dense, N, K, k, g, h, cpu_bits, NULL, &err);
    bits_differ += memcmp(gpu_bits, cpu_bits, nb * 4) != 0;
    free(g), free(h), free(gpu_bits), free(cpu_bits);
  }
  printf("  step 0 against the PTQ export's signs: %d of %d weights differ\n", bits_differ, nw);
  CHECK(rc == RB_OK && bits_differ == 0, "step 0's signs differ from the PTQ export's in %d weights", bits_differ);
  free(tok);
  tr_step_close(st);
  ref_train_model_free(&m);
  unlink(wpath);
  rb_buf_free(&err);
  rt_gpu_close(gpu);
  return CHECK_SUMMARY();
}
