/* test_tiny.c: the host kernels composed into samples/tiny.ir's decoder (the
 * kernels its fused graph selects: embed, rmsnorm, the fused q/k linear, v at
 * k = 3, rope_kv, attention, o + residual, the fused gate/up with swiglu, down
 * at k = 1 + residual, the final rmsnorm), wired by hand here until the
 * runtime runs plans on the host, against the float64 reference decoder
 * (tests/ref/ref_model.c) on random weights: the logits of a prefill of T
 * tokens, and of the last token again as a decode step over the KV cache.
 * The tied lm_head is quant = none (cuBLAS on CUDA; the host has no dense
 * kernel yet), so the test multiplies it in double. Tolerance: relative L2
 * 2e-2, the GPU model test's (fp16 activations through 2 layers). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "tests/host/util.h"
#include "tests/ref/ref.h"

enum { V = 256, D = 64, F = 160, L = 2, H = 4, HKV = 2, HD = 16, T = 7, CTX = 32 };
static const float EPS = 1e-5f, THETA = 10000.0f;

static RtCache *cache;
static RtHostJit *jit;
static RbPool *pool;
static RbBuf warn;
static void *owned[512];
static int nowned;
static void *own(void *p) { return owned[nowned++] = p; }
#define P(x) ((CgDevPtr)(uintptr_t)(x))

/* A kernel, built and loaded, with its geometry. */
typedef struct {
  CgKernel k;
  CgGeometry g;
  CgHostEntry fn;
} K;

static void load(K *kk) {
  RtBuilt b;
  RbBuf err = {0};
  CHECK(cg_target_host.geometry(&kk->k, &kk->g, &err) == RB_OK, "%s", err.data);
  rb_buf_free(&err);
  if (hu_build_load(&kk->k, 1, cache, jit, &b, &kk->fn, &warn) != RB_OK) kk->fn = NULL;
  rt_built_free(&b, 1);
  if (!kk->fn) {
    fprintf(stderr, "kernel %s did not build\n", cg_kind_name(kk->k.op.kind));
    exit(1);
  }
}

static void run(const K *kk, int n, CgArgv *av) { rt_host_launch(pool, kk->fn, &kk->g, n, av->v); }

/* One quantized matrix: the reference's canonical form and its fp16 scales. */
typedef struct {
  RefLinear ref;
  uint16_t *g16, *h16;
} Mat;

static Mat mat(int N, int Kd, int paths) {
  Mat m = {{N, Kd, paths, NULL, NULL, NULL, NULL}, NULL, NULL};
  int8_t *s = malloc((size_t)paths * N * Kd);
  for (size_t i = 0; i < (size_t)paths * N * Kd; i++) s[i] = hu_rand() & 1 ? 1 : -1;
  uint32_t *bits = own(malloc(4 * (size_t)paths * N * cg_packed_words(Kd)));
  ref_pack_signs(bits, s, paths, N, Kd);
  free(s);
  float *g = own(malloc(4 * (size_t)paths * N)), *h = own(malloc(4 * (size_t)paths * Kd));
  m.g16 = own(malloc(2 * (size_t)paths * N)), m.h16 = own(malloc(2 * (size_t)paths * Kd));
  hu_fill(g, m.g16, (size_t)paths * N, 0.5f / sqrtf((float)Kd), 1.5f / sqrtf((float)Kd));
  hu_fill(h, m.h16, (size_t)paths * Kd, 0.5f, 1.5f);
  m.ref.bits = bits, m.ref.g = g, m.ref.h = h;
  return m;
}

/* A fused linear of nseg matrices sharing K and paths: its kernel, repack,
 * layout, g (paths, Ntot) and h (nseg, paths, K). */
typedef struct {
  K lin, rep;
  void *layout;
  uint16_t *g, *h;
} Lin;

static Lin lin(Mat *m, int nseg, CgEpilogue epi) {
  Lin l;
  memset(&l, 0, sizeof l);
  CgOp op = {.kind = CG_LINEAR, .K = m[0].ref.K, .nseg = nseg, .paths = m[0].ref.paths, .epilogue = epi};
  int ntot = 0, P = op.paths, Kd = op.K;
  for (int s = 0; s < nseg; s++) op.N[s] = m[s].ref.N, ntot += m[s].ref.N;
  l.lin.k.op = op;
  cg_target_host.linear_buckets(&op, &l.lin.k.sched);
  l.rep.k.op = op, l.rep.k.op.kind = CG_REPACK, l.rep.k.op.epilogue = CG_EPI_NONE;
  load(&l.lin), load(&l.rep);
  l.layout = own(malloc(cg_target_host.layout_bytes(&op)));
  l.g = own(malloc(2 * (size_t)P * ntot)), l.h = own(malloc(2 * (size_t)nseg * P * Kd));
  for (int s = 0, row0 = 0; s < nseg; row0 += m[s].ref.N, s++) {
    for (int p = 0; p < P; p++) {
      memcpy(l.g + (size_t)p * ntot + row0, m[s].g16 + (size_t)p * m[s].ref.N, 2 * (size_t)m[s].ref.N);
      memcpy(l.h + ((size_t)s * P + p) * Kd, m[s].h16 + (size_t)p * Kd, 2 * (size_t)Kd);
    }
    CgRepackArgs ra = {P(l.layout), P(m[s].ref.bits), s};
    CgArgv av;
    cg_repack_argv(&ra, &av);
    run(&l.rep, 1, &av);
  }
  return l;
}

static void apply(const Lin *l, uint16_t *y, const uint16_t *x, const uint16_t *res, int n) {
  CgLinearArgs a = {P(y), P(x), P(l->layout), P(l->g), P(l->h), P(res), n};
  CgArgv av;
  cg_linear_argv(&a, &av);
  run(&l->lin, n, &av);
}

typedef struct {
  uint16_t *n1, *n2;
  Lin qk, v, o, gu, down;
  uint16_t *kc, *vc;
} Layer;

static K embed_k, norm_k, rope_k, att_k;
static Layer lay[L];
static uint16_t *emb16, *fn16;
static float *embf;

/* The host decoder over tokens at positions pos0 ..; logits (n, V) in double. */
static void forward(const int *tok, int n, int pos0, double *logits) {
  uint16_t *x = malloc(2 * n * D), *hb = malloc(2 * n * D), *qk = malloc(2 * n * (D + HKV * HD));
  uint16_t *vv = malloc(2 * n * HKV * HD), *a = malloc(2 * n * D), *m = malloc(2 * n * F);
  CgArgv av;
  CgEmbedArgs ea = {P(x), P(tok), P(emb16), n};
  cg_embed_argv(&ea, &av), run(&embed_k, n, &av);
  for (int l = 0; l < L; l++) {
    Layer *y = &lay[l];
    CgRmsnormArgs ra = {P(hb), P(x), P(y->n1), n};
    cg_rmsnorm_argv(&ra, &av), run(&norm_k, n, &av);
    apply(&y->qk, qk, hb, NULL, n);
    apply(&y->v, vv, hb, NULL, n);
    int ld = D + HKV * HD;
    CgRopeKvArgs rk = {P(qk), ld, P(qk + D), ld, P(vv), HKV * HD, P(y->kc), P(y->vc), P(&pos0), n};
    cg_rope_kv_argv(&rk, &av), run(&rope_k, n, &av);
    CgAttentionArgs at = {P(a), P(qk), ld, P(y->kc), P(y->vc), P(&pos0), n, 0};
    cg_attention_argv(&at, &av), run(&att_k, n, &av);
    apply(&y->o, x, a, x, n); /* x = o a + x */
    CgRmsnormArgs rb = {P(hb), P(x), P(y->n2), n};
    cg_rmsnorm_argv(&rb, &av), run(&norm_k, n, &av);
    apply(&y->gu, m, hb, NULL, n); /* silu(gate) * up */
    apply(&y->down, x, m, x, n);
  }
  CgRmsnormArgs rf = {P(hb), P(x), P(fn16), n};
  cg_rmsnorm_argv(&rf, &av), run(&norm_k, n, &av);
  for (int t = 0; t < n; t++)
    for (int v = 0; v < V; v++) {
      double s = 0;
      for (int d = 0; d < D; d++) s += (double)rb_f32_from_f16(hb[t * D + d]) * embf[v * D + d];
      logits[(size_t)t * V + v] = s;
    }
  free(x), free(hb), free(qk), free(vv), free(a), free(m);
}

int main(void) {
  double t0 = rb_now_ms();
  char *dir;
  hu_seed(7);
  hu_env_open("host-tiny", &dir, &cache, &jit, &pool);
  embed_k.k.op = (CgOp){.kind = CG_EMBED, .vocab = V, .dim = D};
  norm_k.k.op = (CgOp){.kind = CG_RMSNORM, .dim = D, .eps = EPS};
  rope_k.k.op = (CgOp){.kind = CG_ROPE_KV, .heads = H, .kv_heads = HKV, .head_dim = HD, .max_ctx = CTX, .rope_theta = THETA};
  att_k.k.op = rope_k.k.op, att_k.k.op.kind = CG_ATTENTION;
  load(&embed_k), load(&norm_k), load(&rope_k), load(&att_k);

  RefLayer rl[L];
  for (int l = 0; l < L; l++) {
    float *n1 = own(malloc(4 * D)), *n2 = own(malloc(4 * D));
    lay[l].n1 = own(malloc(2 * D)), lay[l].n2 = own(malloc(2 * D));
    hu_fill(n1, lay[l].n1, D, 0.5f, 1.5f), hu_fill(n2, lay[l].n2, D, 0.5f, 1.5f);
    Mat qk[2] = {mat(H * HD, D, 2), mat(HKV * HD, D, 2)}, v = mat(HKV * HD, D, 3), o = mat(D, H * HD, 2);
    Mat gu[2] = {mat(F, D, 2), mat(F, D, 2)}, down = mat(D, F, 1);
    lay[l].qk = lin(qk, 2, CG_EPI_NONE), lay[l].v = lin(&v, 1, CG_EPI_NONE), lay[l].o = lin(&o, 1, CG_EPI_ADD);
    lay[l].gu = lin(gu, 2, CG_EPI_SWIGLU), lay[l].down = lin(&down, 1, CG_EPI_ADD);
    lay[l].kc = own(calloc((size_t)HKV * CTX * HD, 2)), lay[l].vc = own(calloc((size_t)HKV * CTX * HD, 2));
    rl[l] = (RefLayer){n1, n2, qk[0].ref, qk[1].ref, v.ref, o.ref, gu[0].ref, gu[1].ref, down.ref};
  }
  embf = own(malloc(4 * V * D)), emb16 = own(malloc(2 * V * D));
  float *fnf = own(malloc(4 * D));
  fn16 = own(malloc(2 * D));
  hu_fill(embf, emb16, (size_t)V * D, -1.0f, 1.0f), hu_fill(fnf, fn16, D, 0.5f, 1.5f);
  RefModel rm = {V, D, F, L, H, HKV, HD, EPS, THETA, embf, fnf, embf, rl};

  int tok[T];
  for (int i = 0; i < T; i++) tok[i] = (int)(hu_rand() % V);
  double *want = malloc(sizeof(double) * T * V), *got = malloc(sizeof(double) * T * V);
  ref_model_forward(&rm, tok, T, want);
  forward(tok, T, 0, got);
  double e = ref_rel_l2(got, want, (size_t)T * V);
  printf("tiny prefill of %d tokens: rel L2 %.3g\n", T, e);
  CHECK(e <= 2e-2, "tiny prefill: rel L2 %.3g", e);
  /* decode: the last token again at position T - 1, over the cache the prefill filled */
  forward(tok + T - 1, 1, T - 1, got);
  e = ref_rel_l2(got, want + (size_t)(T - 1) * V, V);
  printf("tiny decode at position %d: rel L2 %.3g\n", T - 1, e);
  CHECK(e <= 2e-2, "tiny decode: rel L2 %.3g", e);
  free(want), free(got);
  for (int i = 0; i < nowned; i++) free(owned[i]);
  hu_env_close(dir, cache, jit, pool, &warn);
  return hu_finish("host_tiny", t0);
}
