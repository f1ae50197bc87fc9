/* train_optim.c: the training kernels around the latent weights (TRAINING.md):
 * the coupled derivation (derive), its straight-through backward
 * (derive_grad_g, derive_grad_h) and the optimizer kernels (adamw,
 * muon_momentum, batch_sumsq, muon_normalize, muon_apply, clip_coef).
 *
 * The emitter dialect of ops.c: each source starts with the prelude, is
 * specialized on the op's dims through #define constants, includes no header,
 * keeps bf16 as raw bits (rb_bf16) and spells every rounding where the contract
 * fixes the bits: __fmul_rn / __fadd_rn / __fsub_rn / __fdiv_rn / __fsqrt_rn
 * never contract into an FMA nor use an approximate division, so the CPU
 * transcriptions (trainer/ptq.c's coupled rule, the tests') agree bit for bit.
 * Reductions use no atomics: a fixed tree inside a block, a fixed number of
 * partials, summed in a fixed order, so a repeated step repeats its bits.
 *
 * Per-step scalars (learning rates, bias corrections, the clip coefficient)
 * are read from the device array indexed by CG_SC_*, so a captured CUDA
 * graph replays with new values. */
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"

#define EMITTER "codegen/cuda/train_optim.c"

#define DERIVE_WARPS 8     /* derive: warps per block, one (row, word) each */
#define GRADH_SC 8         /* derive_grad_h: columns per block (a stripe of 32-byte row segments) */
#define EW_THREADS 256     /* elementwise kernels */
#define EW_PER 4           /* elementwise: elements per thread per launch extent */
#define SUMSQ_THREADS 1024 /* batch_sumsq: one block per matrix */
#define TILE 32            /* muon_normalize / muon_apply: 32 x 32 tiles */
#define TILE_ROWS 8        /* ... by a 32 x 8 block */


/* The CG_SC_* indices, as the kernels read them. */
static void scalar_defines(RbBuf *b) {
  rb_buf_printf(b,
                "#define SC_LR_W %d  /* scalars[]: the CG_SC_* indices of codegen.h */\n"
                "#define SC_LR_S %d\n"
                "#define SC_BIAS1 %d\n"
                "#define SC_BIAS2 %d\n"
                "#define SC_CLIP %d\n"
                "#define SC_NORM %d\n",
                CG_SC_LR_W, CG_SC_LR_S, CG_SC_BIAS1, CG_SC_BIAS2, CG_SC_CLIP, CG_SC_NORM);
}

static int is_derive(CgKind k) {
  return k == CG_DERIVE || k == CG_DERIVE_STANDARD || k == CG_DERIVE_GRAD_G || k == CG_DERIVE_GRAD_H;
}

static int round_up(int v, int m) { return (v + m - 1) / m * m; }

/* RB_OK when the op is one of this file's and the dims it reads are usable. */
static int optim_check(const CgOp *s, RbBuf *err) {
  switch (s->kind) {
  case CG_DERIVE:
  case CG_DERIVE_STANDARD:
  case CG_DERIVE_GRAD_G:
  case CG_DERIVE_GRAD_H:
    if (s->N[0] < 1 || s->K < 1 || s->paths < 1 || s->paths > CG_MAX_PATHS) {
      rb_buf_printf(err, "%s: N and K must be positive and paths 1..%d (got N %d, K %d, paths %d)",
                    cg_kind_name(s->kind), CG_MAX_PATHS, s->N[0], s->K, s->paths);
      return RB_EUSER;
    }
    if ((long long)s->N[0] * cg_packed_words(s->K) > 0x7fffffffLL / 2) {
      rb_buf_printf(err, "%s: %d x %d is too large for one launch", cg_kind_name(s->kind), s->N[0], s->K);
      return RB_EUSER;
    }
    return RB_OK;
  case CG_ADAMW:
  case CG_MUON_MOMENTUM:
  case CG_BATCH_SUMSQ:
  case CG_MUON_NORMALIZE:
  case CG_MUON_APPLY:
  case CG_CLIP_COEF: return RB_OK;
  default:
    rb_buf_printf(err, "train_optim: kernel kind %s is not an optimizer kernel", cg_kind_name(s->kind));
    return RB_EUSER;
  }
}

/* Entry names: "rb_derive_n576_k576_p2"; "rb_adamw" and the like for the
 * kinds specialized on nothing (their description is their name). */
static void optim_entry(const CgKernel *k, char entry[CG_ENTRY_MAX]) {
  const CgOp *s = &k->op;
  char name[160];
  if (is_derive(s->kind))
    snprintf(name, sizeof name, "rb_%s_n%d_k%d_p%d", cg_kind_name(s->kind), s->N[0], s->K, s->paths);
  else
    snprintf(name, sizeof name, "rb_%s", cg_kind_name(s->kind));
  cg_cuda_entry(k, name, 0, entry);
}

static void derive_defines(RbBuf *b, const CgOp *s) {
  rb_buf_printf(b,
                "#define N %d  /* rows of W */\n"
                "#define K %d  /* columns of W */\n"
                "#define PATHS %d\n"
                "#define WORDS %lld  /* sign words per row (codegen/packed.c) */\n",
                s->N[0], s->K, s->paths, (long long)cg_packed_words(s->K));
}

/* derive_grad_g: threads for a row of K, about 4 columns each, whole warps, 32..256. */
static int gradg_threads(int K) {
  int t = round_up((K + 3) / 4, 32);
  return t < 32 ? 32 : t > 256 ? 256 : t;
}

/* derive_grad_h: 256 threads (32 rows a pass), 512 (64) from 512 rows on. */
static int gradh_threads(int N) { return N >= 512 ? 512 : 256; }

/* ==== derive ==== */

/* One warp per (row, sign word): lane j owns column 32 word + j, so the warp
 * reads 32 consecutive floats of W (consecutive warps: consecutive words, then
 * the next row), keeps R and acc in registers through the paths, and one
 * ballot per path gives the word. */
static void emit_derive(const CgKernel *k, RbBuf *b, const char *entry) {
  cg_cuda_prelude(b, k, EMITTER);
  cg_cuda_prelude_bf16(b);
  derive_defines(b, &k->op);
  rb_buf_printf(b,
                "#define WARPS %d  /* per block */\n"
                "\n"
                "/* The coupled derivation of TRAINING.md, the rule of trainer/ptq.c bit for bit:\n"
                " *   R = W; for p: gh = g_p[n] h_p[c]; B = R >= 0 ? +1 : -1 (bit set for -1);\n"
                " *   R = R - B gh; acc = acc + B gh;  what = bf16(acc)\n"
                " * every product and sum rounded on its own (no FMA). w, what (N, K); g (PATHS, N);\n"
                " * h (PATHS, K); bits (PATHS, N, WORDS), pad bits 0. grid (ceil(N WORDS / WARPS)), block (32 WARPS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(32 * WARPS)\n"
                "%s(rb_bf16 *__restrict__ what, unsigned *__restrict__ bits, const float *__restrict__ w,\n"
                "    const float *__restrict__ g, const float *__restrict__ h) {\n"
                "  const long long job = (long long)blockIdx.x * WARPS + (threadIdx.x >> 5);\n"
                "  if (job >= (long long)N * WORDS) return;  /* whole warps: the ballots below see all 32 lanes */\n"
                "  const int lane = threadIdx.x & 31;\n"
                "  const int n = (int)(job / WORDS), word = (int)(job %% WORDS);\n"
                "  const int c = word * 32 + lane;\n"
                "  const bool in = c < K;  /* pad lanes: no column, bit 0 */\n"
                "  float r = in ? w[(long long)n * K + c] : 0.0f;\n"
                "  float acc = 0.0f;\n"
                "#pragma unroll\n"
                "  for (int p = 0; p < PATHS; p++) {\n"
                "    const float gh = __fmul_rn(g[p * N + n], in ? h[p * K + c] : 0.0f);\n"
                "    const bool neg = !(r >= 0.0f);  /* sign(0) = +1; as ptq.c, anything not >= 0 is -1 */\n"
                "    const float bgh = neg ? -gh : gh;\n"
                "    r = __fsub_rn(r, bgh);\n"
                "    acc = __fadd_rn(acc, bgh);\n"
                "    const unsigned word_bits = __ballot_sync(0xffffffffu, in && neg);\n"
                "    if (lane == 0) bits[((long long)p * N + n) * WORDS + word] = word_bits;\n"
                "  }\n"
                "  if (in) what[(long long)n * K + c] = rb_f2bf(acc);\n"
                "}\n",
                DERIVE_WARPS, entry);
}

/* ==== derive_grad_g ==== */

/* One block per row n: thread t sums columns t, t + THREADS, ... for every
 * path (dwhat read once, coalesced), then a fixed tree: warp butterflies and
 * the warps' partials in ascending order. */
static void emit_derive_grad_g(const CgKernel *k, RbBuf *b, const char *entry) {
  int threads = gradg_threads(k->op.K);
  cg_cuda_prelude(b, k, EMITTER);
  derive_defines(b, &k->op);
  rb_buf_printf(b,
                "#define THREADS %d\n"
                "#define NWARP (THREADS / 32)\n"
                "\n"
                "/* dg_p[n] = sum_c dwhat[n, c] B_p[n, c] h_p[c] (straight through: B held constant).\n"
                " * dg (PATHS, N); dwhat (N, K); bits (PATHS, N, WORDS); h (PATHS, K).\n"
                " * grid (N), block (THREADS); deterministic: a fixed order of sums, no atomics. */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *__restrict__ dg, const float *__restrict__ dwhat, const unsigned *__restrict__ bits,\n"
                "    const float *__restrict__ h) {\n"
                "  const int n = blockIdx.x;\n"
                "  if (n >= N) return;\n"
                "  const float *dr = dwhat + (long long)n * K;\n"
                "  float acc[PATHS];\n"
                "#pragma unroll\n"
                "  for (int p = 0; p < PATHS; p++) acc[p] = 0.0f;\n"
                "  for (int c = threadIdx.x; c < K; c += THREADS) {\n"
                "    const float d = dr[c];\n"
                "#pragma unroll\n"
                "    for (int p = 0; p < PATHS; p++) {\n"
                "      const unsigned wb = bits[((long long)p * N + n) * WORDS + (c >> 5)];\n"
                "      const float t = d * h[p * K + c];\n"
                "      acc[p] += (wb >> (c & 31)) & 1u ? -t : t;\n"
                "    }\n"
                "  }\n"
                "  __shared__ float part[PATHS][NWARP];\n"
                "  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;\n"
                "#pragma unroll\n"
                "  for (int p = 0; p < PATHS; p++) {\n"
                "    float v = acc[p];\n"
                "#pragma unroll\n"
                "    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);\n"
                "    if (lane == 0) part[p][warp] = v;\n"
                "  }\n"
                "  __syncthreads();\n"
                "  if (threadIdx.x < PATHS) {\n"
                "    float s = 0.0f;\n"
                "#pragma unroll\n"
                "    for (int i = 0; i < NWARP; i++) s += part[threadIdx.x][i];  /* ascending warps */\n"
                "    dg[threadIdx.x * N + n] = s;\n"
                "  }\n"
                "}\n",
                threads, entry);
}

/* ==== derive_grad_h ==== */

/* One launch, both stages inside each block: block x owns the stripe of SC
 * columns c0 = SC x .. c0 + SC - 1 and loops over all N rows. Thread t takes
 * column c0 + t % SC and rows t / SC, + RPP, ...; a warp reads 4 rows of 32
 * bytes each. The stripe's partials meet in a fixed tree (butterflies over the
 * 4 row lanes of a column, then the warps in ascending order). */
static void emit_derive_grad_h(const CgKernel *k, RbBuf *b, const char *entry) {
  int threads = gradh_threads(k->op.N[0]);
  cg_cuda_prelude(b, k, EMITTER);
  derive_defines(b, &k->op);
  rb_buf_printf(b,
                "#define THREADS %d\n"
                "#define SC %d  /* columns per block */\n"
                "#define RPP (THREADS / SC)  /* rows per pass */\n"
                "#define NWARP (THREADS / 32)\n"
                "\n"
                "/* dh_p[c] = sum_n dwhat[n, c] B_p[n, c] g_p[n] (straight through: B held constant).\n"
                " * dh (PATHS, K); dwhat (N, K); bits (PATHS, N, WORDS); g (PATHS, N). part is not used\n"
                " * (cg_derive_grad_h_parts is 0). grid (ceil(K / SC)), block (THREADS); deterministic:\n"
                " * each column's rows are summed in a fixed order, no atomics. */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *__restrict__ dh, float *__restrict__ part, const float *__restrict__ dwhat,\n"
                "    const unsigned *__restrict__ bits, const float *__restrict__ g) {\n"
                "  (void)part;\n"
                "  const int col = threadIdx.x %% SC;\n"
                "  const int c = blockIdx.x * SC + col;\n"
                "  float acc[PATHS];\n"
                "#pragma unroll\n"
                "  for (int p = 0; p < PATHS; p++) acc[p] = 0.0f;\n"
                "  if (c < K) {\n"
                "#pragma unroll 8\n"
                "    for (int n = threadIdx.x / SC; n < N; n += RPP) {\n"
                "      const float d = dwhat[(long long)n * K + c];\n"
                "#pragma unroll\n"
                "      for (int p = 0; p < PATHS; p++) {\n"
                "        const unsigned wb = bits[((long long)p * N + n) * WORDS + (c >> 5)];\n"
                "        const float t = d * g[p * N + n];\n"
                "        acc[p] += (wb >> (c & 31)) & 1u ? -t : t;\n"
                "      }\n"
                "    }\n"
                "  }\n"
                "  __shared__ float part_s[PATHS][NWARP][SC];\n"
                "  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;\n"
                "#pragma unroll\n"
                "  for (int p = 0; p < PATHS; p++) {\n"
                "    float v = acc[p];\n"
                "#pragma unroll\n"
                "    for (int o = SC; o < 32; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);  /* same column */\n"
                "    if (lane < SC) part_s[p][warp][lane] = v;\n"
                "  }\n"
                "  __syncthreads();\n"
                "  if (threadIdx.x < PATHS * SC) {\n"
                "    const int p = threadIdx.x / SC, cc = blockIdx.x * SC + threadIdx.x %% SC;\n"
                "    float s = 0.0f;\n"
                "#pragma unroll\n"
                "    for (int i = 0; i < NWARP; i++) s += part_s[p][i][threadIdx.x %% SC];  /* ascending warps */\n"
                "    if (cc < K) dh[p * K + cc] = s;\n"
                "  }\n"
                "}\n",
                threads, GRADH_SC, entry);
}

/* ==== adamw, muon_momentum: elementwise, grid-stride over long long n ==== */

static void emit_adamw(const CgKernel *k, RbBuf *b, const char *entry) {
  cg_cuda_prelude(b, k, EMITTER);
  scalar_defines(b);
  rb_buf_printf(b,
                "#define THREADS %d\n"
                "\n"
                "/* One AdamW step of TRAINING.md (torch.optim semantics, no weight decay), each\n"
                " * operation rounded on its own (no FMA), in this order:\n"
                " *   gr = grad c;  m = b1 m + (1 - b1) gr;  v = b2 v + (1 - b2) (gr gr)\n"
                " *   p = p - (lr (m / bc1)) / (sqrt(v / bc2) + eps);  p = p < 0 ? 0 : p when clamp\n"
                " * with lr, bc1 = 1 - b1^t, bc2 = 1 - b2^t and c (the clip coefficient) from scalars.\n"
                " * p, m, v, grad (n). grid-stride: any grid covers n. */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *__restrict__ p, float *__restrict__ m, float *__restrict__ v,\n"
                "    const float *__restrict__ grad, const float *__restrict__ scalars, long long n,\n"
                "    float beta1, float beta2, float eps, int clamp) {\n"
                "  const float lr = scalars[SC_LR_S], bc1 = scalars[SC_BIAS1], bc2 = scalars[SC_BIAS2];\n"
                "  const float clip = scalars[SC_CLIP];\n"
                "  const float ob1 = __fsub_rn(1.0f, beta1), ob2 = __fsub_rn(1.0f, beta2);\n"
                "  for (long long i = (long long)blockIdx.x * THREADS + threadIdx.x; i < n;\n"
                "       i += (long long)gridDim.x * THREADS) {\n"
                "    const float gr = __fmul_rn(grad[i], clip);\n"
                "    const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(ob1, gr));\n"
                "    const float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(ob2, __fmul_rn(gr, gr)));\n"
                "    const float den = __fadd_rn(__fsqrt_rn(__fdiv_rn(vi, bc2)), eps);\n"
                "    float pi = __fsub_rn(p[i], __fdiv_rn(__fmul_rn(lr, __fdiv_rn(mi, bc1)), den));\n"
                "    if (clamp && pi < 0.0f) pi = 0.0f;\n"
                "    m[i] = mi;\n"
                "    v[i] = vi;\n"
                "    p[i] = pi;\n"
                "  }\n"
                "}\n",
                EW_THREADS, entry);
}

static void emit_muon_momentum(const CgKernel *k, RbBuf *b, const char *entry) {
  cg_cuda_prelude(b, k, EMITTER);
  scalar_defines(b);
  rb_buf_printf(b,
                "#define THREADS %d\n"
                "\n"
                "/* Muon's nesterov momentum (TRAINING.md), each operation rounded on its own:\n"
                " *   t = (1 - mu) (c grad);  buf = mu buf + t;  u = t + mu buf\n"
                " * c the clip coefficient from scalars. buf, u, grad (n); u may alias grad.\n"
                " * grid-stride: any grid covers n. */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *__restrict__ buf, float *u, const float *grad, const float *__restrict__ scalars,\n"
                "    long long n, float mu) {\n"
                "  const float clip = scalars[SC_CLIP], omu = __fsub_rn(1.0f, mu);\n"
                "  for (long long i = (long long)blockIdx.x * THREADS + threadIdx.x; i < n;\n"
                "       i += (long long)gridDim.x * THREADS) {\n"
                "    const float t = __fmul_rn(omu, __fmul_rn(clip, grad[i]));\n"
                "    const float bi = __fadd_rn(__fmul_rn(mu, buf[i]), t);\n"
                "    buf[i] = bi;\n"
                "    u[i] = __fadd_rn(t, __fmul_rn(mu, bi));\n"
                "  }\n"
                "}\n",
                EW_THREADS, entry);
}

/* ==== batch_sumsq ==== */

static void emit_batch_sumsq(const CgKernel *k, RbBuf *b, const char *entry) {
  cg_cuda_prelude(b, k, EMITTER);
  rb_buf_printf(b,
                "#define THREADS %d\n"
                "#define NWARP (THREADS / 32)\n"
                "\n"
                "/* out[b] = sum of x^2 over x[b per .. b per + per), one block per b: thread t sums\n"
                " * elements t + THREADS i into 4 accumulators (i mod 4), then a fixed tree (the 4,\n"
                " * warp butterflies, the warps in ascending order). out (batch); x (batch, per).\n"
                " * grid (batch), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *__restrict__ out, const float *__restrict__ x, long long per, int batch) {\n"
                "  const int b = blockIdx.x;\n"
                "  if (b >= batch) return;\n"
                "  const float *xb = x + (long long)b * per;\n"
                "  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;\n"
                "  long long i = threadIdx.x;\n"
                "  for (; i + 3 * THREADS < per; i += 4 * THREADS) {\n"
                "    const float a0 = xb[i], a1 = xb[i + THREADS], a2 = xb[i + 2 * THREADS], a3 = xb[i + 3 * THREADS];\n"
                "    s0 += a0 * a0;\n"
                "    s1 += a1 * a1;\n"
                "    s2 += a2 * a2;\n"
                "    s3 += a3 * a3;\n"
                "  }\n"
                "  for (; i < per; i += THREADS) {\n"
                "    const float a = xb[i];\n"
                "    s0 += a * a;\n"
                "  }\n"
                "  float s = (s0 + s1) + (s2 + s3);\n"
                "#pragma unroll\n"
                "  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);\n"
                "  __shared__ float part[NWARP];\n"
                "  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;\n"
                "  __syncthreads();\n"
                "  if (threadIdx.x == 0) {\n"
                "    float t = 0.0f;\n"
                "#pragma unroll\n"
                "    for (int w = 0; w < NWARP; w++) t += part[w];  /* ascending warps */\n"
                "    out[b] = t;\n"
                "  }\n"
                "}\n",
                SUMSQ_THREADS, entry);
}

/* ==== muon_normalize, muon_apply: 32 x 32 tiles, transposed through shared memory ==== */

/* The tile loop both kernels share: block-stride over every tile of the
 * batch (the grid from the element count may have fewer blocks than tiles
 * when rows or cols are not multiples of TILE). Opens a brace the caller closes. */
static const char tile_loop[] =
    "  const int tr = (rows + TILE - 1) / TILE, tc = (cols + TILE - 1) / TILE;\n"
    "  const long long per_mat = (long long)tr * tc;\n"
    "  const long long ntiles = (long long)batch * per_mat;\n"
    "  const int tx = threadIdx.x, ty = threadIdx.y;\n"
    "  for (long long t = blockIdx.x; t < ntiles; t += gridDim.x) {\n"
    "    const int b = (int)(t / per_mat);\n"
    "    const int rem = (int)(t % per_mat);\n"
    "    const int r0 = rem / tc * TILE, c0 = rem % tc * TILE;\n"
    "    const long long base = (long long)b * rows * cols;\n";

static void emit_muon_normalize(const CgKernel *k, RbBuf *b, const char *entry) {
  cg_cuda_prelude(b, k, EMITTER);
  cg_cuda_prelude_bf16(b);
  rb_buf_printf(b,
                "#define TILE %d\n"
                "#define TILE_ROWS %d\n"
                "\n"
                "/* x = bf16(u / max(sqrt(sumsq[b]), 1e-7)) for batch matrices u (batch, rows, cols), the\n"
                " * division rounded on its own; x (batch, rows, cols), or (batch, cols, rows) when\n"
                " * transpose (through a shared tile, so reads and writes are both coalesced).\n"
                " * block (TILE, TILE_ROWS); any grid (it strides over the tiles). */\n"
                "extern \"C\" __global__ void __launch_bounds__(TILE * TILE_ROWS)\n"
                "%s(rb_bf16 *__restrict__ x, const float *__restrict__ u, const float *__restrict__ sumsq,\n"
                "    int rows, int cols, int batch, int transpose) {\n"
                "  __shared__ float tile[TILE][TILE + 1];\n"
                "%s"
                "    const float d = fmaxf(__fsqrt_rn(sumsq[b]), 1e-7f);\n"
                "    if (!transpose) {\n"
                "      for (int i = ty; i < TILE; i += TILE_ROWS) {\n"
                "        const int r = r0 + i, c = c0 + tx;\n"
                "        if (r < rows && c < cols) {\n"
                "          const long long e = base + (long long)r * cols + c;\n"
                "          x[e] = rb_f2bf(__fdiv_rn(u[e], d));\n"
                "        }\n"
                "      }\n"
                "    } else {  /* transpose is the same for the whole block */\n"
                "      __syncthreads();  /* the previous tile's readers are done */\n"
                "      for (int i = ty; i < TILE; i += TILE_ROWS) {\n"
                "        const int r = r0 + i, c = c0 + tx;\n"
                "        if (r < rows && c < cols) tile[i][tx] = u[base + (long long)r * cols + c];\n"
                "      }\n"
                "      __syncthreads();\n"
                "      for (int i = ty; i < TILE; i += TILE_ROWS) {  /* x row c0 + i, column r0 + tx */\n"
                "        const int c = c0 + i, r = r0 + tx;\n"
                "        if (r < rows && c < cols) x[base + (long long)c * rows + r] = rb_f2bf(__fdiv_rn(tile[tx][i], d));\n"
                "      }\n"
                "    }\n"
                "  }\n"
                "}\n",
                TILE, TILE_ROWS, entry, tile_loop);
}

static void emit_muon_apply(const CgKernel *k, RbBuf *b, const char *entry) {
  cg_cuda_prelude(b, k, EMITTER);
  cg_cuda_prelude_bf16(b);
  scalar_defines(b);
  rb_buf_printf(b,
                "#define TILE %d\n"
                "#define TILE_ROWS %d\n"
                "\n"
                "/* w = w - (lr scale) x, lr = scalars[SC_LR_W], each operation rounded on its own;\n"
                " * w (batch, rows, cols); x bf16 as muon_normalize wrote it: (batch, rows, cols), or\n"
                " * (batch, cols, rows) when transpose (read through a shared tile).\n"
                " * block (TILE, TILE_ROWS); any grid (it strides over the tiles). */\n"
                "extern \"C\" __global__ void __launch_bounds__(TILE * TILE_ROWS)\n"
                "%s(float *__restrict__ w, const rb_bf16 *__restrict__ x, const float *__restrict__ scalars,\n"
                "    int rows, int cols, int batch, int transpose, float scale) {\n"
                "  __shared__ float tile[TILE][TILE + 1];\n"
                "  const float a = __fmul_rn(scalars[SC_LR_W], scale);\n"
                "%s"
                "    if (!transpose) {\n"
                "      for (int i = ty; i < TILE; i += TILE_ROWS) {\n"
                "        const int r = r0 + i, c = c0 + tx;\n"
                "        if (r < rows && c < cols) {\n"
                "          const long long e = base + (long long)r * cols + c;\n"
                "          w[e] = __fsub_rn(w[e], __fmul_rn(a, rb_bf2f(x[e])));\n"
                "        }\n"
                "      }\n"
                "    } else {  /* transpose is the same for the whole block */\n"
                "      __syncthreads();  /* the previous tile's readers are done */\n"
                "      for (int i = ty; i < TILE; i += TILE_ROWS) {  /* x row c0 + i, column r0 + tx */\n"
                "        const int c = c0 + i, r = r0 + tx;\n"
                "        if (r < rows && c < cols) tile[i][tx] = rb_bf2f(x[base + (long long)c * rows + r]);\n"
                "      }\n"
                "      __syncthreads();\n"
                "      for (int i = ty; i < TILE; i += TILE_ROWS) {\n"
                "        const int r = r0 + i, c = c0 + tx;\n"
                "        if (r < rows && c < cols) {\n"
                "          const long long e = base + (long long)r * cols + c;\n"
                "          w[e] = __fsub_rn(w[e], __fmul_rn(a, tile[tx][i]));\n"
                "        }\n"
                "      }\n"
                "    }\n"
                "  }\n"
                "}\n",
                TILE, TILE_ROWS, entry, tile_loop);
}

/* ==== clip_coef ==== */

static void emit_clip_coef(const CgKernel *k, RbBuf *b, const char *entry) {
  cg_cuda_prelude(b, k, EMITTER);
  scalar_defines(b);
  rb_buf_printf(b,
                "\n"
                "/* One thread: scalars[SC_NORM] = sqrt(*sumsq);\n"
                " * scalars[SC_CLIP] = min(1, max_norm / (norm + 1e-6)) (torch clip_grad_norm_).\n"
                " * grid (1), block (1). */\n"
                "extern \"C\" __global__ void __launch_bounds__(1)\n"
                "%s(float *__restrict__ scalars, const float *__restrict__ sumsq, float max_norm) {\n"
                "  if (threadIdx.x || blockIdx.x) return;\n"
                "  const float norm = __fsqrt_rn(*sumsq);\n"
                "  scalars[SC_NORM] = norm;\n"
                "  scalars[SC_CLIP] = fminf(1.0f, __fdiv_rn(max_norm, __fadd_rn(norm, 1e-6f)));\n"
                "}\n",
                entry);
}

/* ==== the family's entry points ==== */

/* The canonical source of an optimizer-family kernel and its entry name. These
 * kinds have one schedule each: k->sched is unused. */
/* Standard QAT's derivation (DESIGN.md's baseline): one latent W_p per path, B_p = sign(W_p)
 * (sign(0) = +1), W_hat = bf16(sum_p B_p gh) in path order, no FMA; the same thread layout as derive. */
static void emit_derive_standard(const CgKernel *k, RbBuf *b, const char *entry) {
  cg_cuda_prelude(b, k, EMITTER);
  cg_cuda_prelude_bf16(b);
  derive_defines(b, &k->op);
  rb_buf_printf(b,
                "#define WARPS %d  /* per block */\n"
                "\n"
                "/* Standard QAT: w (PATHS, N, K) one latent per path; B_p = w_p >= 0 ? +1 : -1 (bit set for -1);\n"
                " * acc = acc + B_p gh, gh = g_p[n] h_p[c], each rounded on its own; what = bf16(acc).\n"
                " * what (N, K); g (PATHS, N); h (PATHS, K); bits (PATHS, N, WORDS), pad bits 0.\n"
                " * grid (ceil(N WORDS / WARPS)), block (32 WARPS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(32 * WARPS)\n"
                "%s(rb_bf16 *__restrict__ what, unsigned *__restrict__ bits, const float *__restrict__ w,\n"
                "    const float *__restrict__ g, const float *__restrict__ h) {\n"
                "  const long long job = (long long)blockIdx.x * WARPS + (threadIdx.x >> 5);\n"
                "  if (job >= (long long)N * WORDS) return;  /* whole warps: the ballots below see all 32 lanes */\n"
                "  const int lane = threadIdx.x & 31;\n"
                "  const int n = (int)(job / WORDS), word = (int)(job %% WORDS);\n"
                "  const int c = word * 32 + lane;\n"
                "  const bool in = c < K;  /* pad lanes: no column, bit 0 */\n"
                "  float acc = 0.0f;\n"
                "#pragma unroll\n"
                "  for (int p = 0; p < PATHS; p++) {\n"
                "    const float r = in ? w[((long long)p * N + n) * K + c] : 0.0f;\n"
                "    const float gh = __fmul_rn(g[p * N + n], in ? h[p * K + c] : 0.0f);\n"
                "    const bool neg = !(r >= 0.0f);\n"
                "    acc = __fadd_rn(acc, neg ? -gh : gh);\n"
                "    const unsigned word_bits = __ballot_sync(0xffffffffu, in && neg);\n"
                "    if (lane == 0) bits[((long long)p * N + n) * WORDS + word] = word_bits;\n"
                "  }\n"
                "  if (in) what[(long long)n * K + c] = rb_f2bf(acc);\n"
                "}\n",
                DERIVE_WARPS, entry);
}

int cg_emit_train_optim(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  int rc = optim_check(&k->op, err);
  if (rc) return rc;
  optim_entry(k, entry);
  switch (k->op.kind) {
  case CG_DERIVE: emit_derive(k, src, entry); break;
  case CG_DERIVE_STANDARD: emit_derive_standard(k, src, entry); break;
  case CG_DERIVE_GRAD_G: emit_derive_grad_g(k, src, entry); break;
  case CG_DERIVE_GRAD_H: emit_derive_grad_h(k, src, entry); break;
  case CG_ADAMW: emit_adamw(k, src, entry); break;
  case CG_MUON_MOMENTUM: emit_muon_momentum(k, src, entry); break;
  case CG_BATCH_SUMSQ: emit_batch_sumsq(k, src, entry); break;
  case CG_MUON_NORMALIZE: emit_muon_normalize(k, src, entry); break;
  case CG_MUON_APPLY: emit_muon_apply(k, src, entry); break;
  case CG_CLIP_COEF: emit_clip_coef(k, src, entry); break;
  default: return RB_EUSER; /* optim_check rejected it already */
  }
  if (src->oom) {
    rb_buf_printf(err, "cg_emit_train_optim: out of memory emitting %s", entry);
    return RB_EINTERNAL;
  }
  return RB_OK;
}

/* Launch geometry. Fixed grids (grow_axis -1: launch with n = 1): derive,
 * derive_grad_g, derive_grad_h, clip_coef. Growing: adamw and muon_momentum
 * (n = elements, EW_THREADS EW_PER a block; the kernels stride, so an extent
 * short of a long long count still covers it), batch_sumsq (n = batch, a block
 * each), muon_normalize and muon_apply (n = batch rows cols, a 32 x 32 tile's
 * worth a block; the kernels stride over the tiles). */
int cg_geometry_train_optim(const CgKernel *k, CgGeometry *g, RbBuf *err) {
  const CgOp *s = &k->op;
  memset(g, 0, sizeof *g);
  int rc = optim_check(s, err);
  if (rc) return rc;
  g->grid[0] = g->grid[1] = g->grid[2] = 1;
  g->block[0] = g->block[1] = g->block[2] = 1;
  g->grow_axis = -1;
  g->n_per_block = 1;
  switch (s->kind) {
  case CG_DERIVE:
  case CG_DERIVE_STANDARD: {
    long long jobs = (long long)s->N[0] * cg_packed_words(s->K);
    g->grid[0] = (unsigned)((jobs + DERIVE_WARPS - 1) / DERIVE_WARPS);
    g->block[0] = 32u * DERIVE_WARPS;
    break;
  }
  case CG_DERIVE_GRAD_G:
    g->grid[0] = (unsigned)s->N[0];
    g->block[0] = (unsigned)gradg_threads(s->K);
    break;
  case CG_DERIVE_GRAD_H:
    g->grid[0] = (unsigned)((s->K + GRADH_SC - 1) / GRADH_SC);
    g->block[0] = (unsigned)gradh_threads(s->N[0]);
    break;
  case CG_ADAMW:
  case CG_MUON_MOMENTUM:
    g->grow_axis = 0;
    g->n_per_block = EW_THREADS * EW_PER;
    g->block[0] = EW_THREADS;
    break;
  case CG_BATCH_SUMSQ:
    g->grow_axis = 0;
    g->block[0] = SUMSQ_THREADS;
    break;
  case CG_MUON_NORMALIZE:
  case CG_MUON_APPLY:
    g->grow_axis = 0;
    g->n_per_block = TILE * TILE;
    g->block[0] = TILE;
    g->block[1] = TILE_ROWS;
    break;
  case CG_CLIP_COEF: break;
  default: return RB_EUSER;
  }
  return RB_OK;
}

/* Floats of CG_DERIVE_GRAD_H's scratch: none. Each block owns a column stripe
 * and sums all its rows itself, so the kernel needs no partials (part may be 0). */
uint64_t cg_derive_grad_h_parts(const CgOp *op) {
  (void)op;
  return 0;
}

/* ==== argument marshalling: the ABI of codegen.h, in the order the kernels declare ==== */

void cg_derive_argv(CgDeriveArgs *a, CgArgv *o) { CG_ARGV(o, &a->what, &a->bits, &a->w, &a->g, &a->h); }
void cg_derive_grad_g_argv(CgDeriveGradGArgs *a, CgArgv *o) { CG_ARGV(o, &a->dg, &a->dwhat, &a->bits, &a->h); }
void cg_derive_grad_h_argv(CgDeriveGradHArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->dh, &a->part, &a->dwhat, &a->bits, &a->g);
}
void cg_adamw_argv(CgAdamwArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->p, &a->m, &a->v, &a->grad, &a->scalars, &a->n, &a->beta1, &a->beta2, &a->eps, &a->clamp);
}
void cg_muon_momentum_argv(CgMuonMomentumArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->buf, &a->u, &a->grad, &a->scalars, &a->n, &a->mu);
}
void cg_batch_sumsq_argv(CgBatchSumsqArgs *a, CgArgv *o) { CG_ARGV(o, &a->out, &a->x, &a->per, &a->batch); }
void cg_muon_normalize_argv(CgMuonNormalizeArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->x, &a->u, &a->sumsq, &a->rows, &a->cols, &a->batch, &a->transpose);
}
void cg_muon_apply_argv(CgMuonApplyArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->w, &a->x, &a->scalars, &a->rows, &a->cols, &a->batch, &a->transpose, &a->scale);
}
void cg_clip_coef_argv(CgClipCoefArgs *a, CgArgv *o) { CG_ARGV(o, &a->scalars, &a->sumsq, &a->max_norm); }
