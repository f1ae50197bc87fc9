/* train_ops.c: emitters for the model's training kernels (TRAINING.md is
 * their contract): cast to bf16, embed and its gradient, rmsnorm and its
 * gradient, the heads split/merge with RoPE, the causal softmax and its
 * gradient, swiglu and its gradient, add, the KL loss, the hidden MSE, and
 * the fixed-order reductions. Activations are fp32, GEMM operands bf16 (raw
 * bits, rb_bf16 of cg_cuda_prelude_bf16). Every sum runs in a fixed order (a
 * butterfly inside each warp, then the warps in warp order; a fixed grid of
 * partials): no atomics, so a step repeated from the same state gives the
 * same bits. Same dialect as ops.c: #define constants, no header included. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"

#define EMITTER "codegen/cuda/train_ops.c"

/* ==== emission helpers ==== */

static int round_up(int v, int m) { return (v + m - 1) / m * m; }

/* Threads of a block that owns a row of width w: about `per` elements each,
 * whole warps, 32..1024. */
static int row_threads(int w, int per) {
  int t = round_up((w + per - 1) / per, 32);
  return t < 32 ? 32 : t > 1024 ? 1024 : t;
}

#define EW_THREADS 256   /* elementwise kernels */
#define EW_PER 4         /* elements per thread, strided by EW_THREADS (coalesced) */
#define EMB_THREADS 256  /* embed_fwd: columns per block */
#define EMBG_THREADS 64  /* embed_grad: columns per block */
#define EMBG_CHUNKS 128  /* embed_grad: the vocabulary is cut into at most this many row ranges */
#define SM_THREADS 256   /* softmax rows */
#define SM_SMAX 4096     /* the longest softmax row (S) */
#define RED_THREADS 256  /* reduce: one block per output */
#define SQ_THREADS 1024  /* sumsq: CG_SUMSQ_PARTS blocks of these */

/* embed_grad's vocabulary rows per block row, and the block rows. */
static int embg_chunk(int V) {
  int chunks = V < EMBG_CHUNKS ? V : EMBG_CHUNKS;
  return (V + chunks - 1) / chunks;
}

/* The fixed-order block reductions a row kernel uses (THREADS defined, a
 * multiple of 32). The butterfly leaves the same bits in every lane, since
 * each step adds the same two values in either order. */
static void emit_block_reduce(RbBuf *b) {
  rb_buf_puts(b,
              "#define NWARP (THREADS / 32)\n"
              "#define NEG_INF __int_as_float(0xff800000)\n"
              "\n"
              "/* The sum of v over the block, the same bits in every thread and on every run:\n"
              " * a butterfly inside each warp, then the warps' sums in warp order. sh holds\n"
              " * NWARP floats and may be reused as soon as this returns. */\n"
              "__device__ __forceinline__ float rb_block_sum(float v, float *sh) {\n"
              "#pragma unroll\n"
              "  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);\n"
              "  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;\n"
              "  __syncthreads();\n"
              "  float s = sh[0];\n"
              "#pragma unroll\n"
              "  for (int w = 1; w < NWARP; w++) s += sh[w];\n"
              "  __syncthreads();\n"
              "  return s;\n"
              "}\n"
              "\n"
              "/* The max of v over the block, as rb_block_sum. */\n"
              "__device__ __forceinline__ float rb_block_max(float v, float *sh) {\n"
              "#pragma unroll\n"
              "  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));\n"
              "  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;\n"
              "  __syncthreads();\n"
              "  float s = sh[0];\n"
              "#pragma unroll\n"
              "  for (int w = 1; w < NWARP; w++) s = fmaxf(s, sh[w]);\n"
              "  __syncthreads();\n"
              "  return s;\n"
              "}\n"
              "\n");
}

/* The double-precision block sum of the reductions (reduce, sumsq). */
static void emit_block_reduce_d(RbBuf *b) {
  rb_buf_puts(b,
              "#define NWARP (THREADS / 32)\n"
              "\n"
              "/* The sum of v over the block in double, the same bits on every run: a\n"
              " * butterfly inside each warp, then the warps' sums in warp order. */\n"
              "__device__ __forceinline__ double rb_block_sum_d(double v, double *sh) {\n"
              "#pragma unroll\n"
              "  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);\n"
              "  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;\n"
              "  __syncthreads();\n"
              "  double s = sh[0];\n"
              "#pragma unroll\n"
              "  for (int w = 1; w < NWARP; w++) s += sh[w];\n"
              "  __syncthreads();\n"
              "  return s;\n"
              "}\n"
              "\n");
}

static void prelude(RbBuf *b, const CgKernel *k) {
  cg_cuda_prelude(b, k, EMITTER);
  cg_cuda_prelude_bf16(b);
}

/* ==== spec checks ==== */

static int train_check(const CgOp *s, RbBuf *err) {
  const char *kn = cg_kind_name(s->kind);
  switch (s->kind) {
  case CG_CAST_BF16:
  case CG_SWIGLU_FWD:
  case CG_SWIGLU_GRAD:
  case CG_ADD_FWD:
  case CG_MSE_GRAD:
  case CG_REDUCE:
  case CG_SUMSQ: return RB_OK;
  case CG_EMBED_FWD:
  case CG_EMBED_GRAD:
    if (s->vocab <= 0 || s->dim <= 0) goto dims;
    return RB_OK;
  case CG_RMSNORM_FWD:
  case CG_RMSNORM_GRAD:
    if (s->dim <= 0) goto dims;
    if (!(s->eps >= 0.0f) || isinf(s->eps)) {
      rb_buf_printf(err, "%s: eps must be finite and >= 0 (got %g)", kn, (double)s->eps);
      return RB_EUSER;
    }
    return RB_OK;
  case CG_HEADS_SPLIT:
  case CG_HEADS_MERGE:
    if (s->heads <= 0 || s->head_dim <= 0) goto dims;
    if (s->head_dim % 2) {
      rb_buf_printf(err, "%s: head_dim (%d) must be even for rotate-half RoPE", kn, s->head_dim);
      return RB_EUSER;
    }
    if (!(s->rope_theta > 1.0f) || isinf(s->rope_theta)) {
      rb_buf_printf(err, "%s: rope_theta must be finite and > 1 (got %g)", kn, (double)s->rope_theta);
      return RB_EUSER;
    }
    return RB_OK;
  case CG_SOFTMAX_FWD:
  case CG_SOFTMAX_GRAD:
    if (s->head_dim <= 0) goto dims;
    return RB_OK;
  case CG_KL_LOSS:
  case CG_CE_LOSS:
    if (s->vocab <= 0) goto dims;
    return RB_OK;
  case CG_COL_ABS: return RB_OK;
  case CG_MSE_ROWS:
    if (s->dim <= 0) goto dims;
    return RB_OK;
  default:
    rb_buf_printf(err, "train_ops: kernel kind %s is not a training op", kn);
    return RB_EUSER;
  }
dims:
  rb_buf_printf(err, "%s: dimensions must be positive (dim %d, vocab %d, heads %d, head_dim %d)", kn, s->dim,
                s->vocab, s->heads, s->head_dim);
  return RB_EUSER;
}

/* ==== elementwise kernels: cast, swiglu and its gradient, add, mse_grad ==== */

/* One kernel over n elements: params, a prologue run once per thread, and the
 * body for element i. grid (ceil(n / (THREADS * PER))). */
static void emit_ew(const CgKernel *k, RbBuf *b, const char *entry, const char *what, const char *params,
                    const char *prologue, const char *body) {
  prelude(b, k);
  rb_buf_printf(b,
                "#define THREADS %d\n"
                "#define PER %d  /* elements per thread, strided by THREADS so warps stay coalesced */\n"
                "\n"
                "/* %s\n"
                " * grid (ceil(n / (THREADS * PER))), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(%s) {\n"
                "%s"
                "  const long long base = (long long)blockIdx.x * (THREADS * PER) + threadIdx.x;\n"
                "#pragma unroll\n"
                "  for (int k = 0; k < PER; k++) {\n"
                "    const long long i = base + k * THREADS;\n"
                "    if (i < n) {\n"
                "%s"
                "    }\n"
                "  }\n"
                "}\n",
                EW_THREADS, EW_PER, what, entry, params, prologue, body);
}

static void emit_elementwise(const CgKernel *k, RbBuf *b, const char *entry) {
  switch (k->op.kind) {
  case CG_CAST_BF16:
    emit_ew(k, b, entry, "y bf16 (n) = x (n), rounded to nearest even.",
            "rb_bf16 *__restrict__ y, const float *__restrict__ x, int n", "",
            "      y[i] = rb_f2bf(x[i]);\n");
    break;
  case CG_SWIGLU_FWD:
    emit_ew(k, b, entry,
            "y = silu(g) u over n elements, silu(z) = z / (1 + e^-z) (for very negative z\n"
            " * expf overflows to inf and the quotient goes to -0, the right limit). y may alias g or u.",
            "float *y, const float *g, const float *u, int n", "",
            "      const float gv = g[i], uv = u[i];\n"
            "      y[i] = gv / (1.0f + expf(-gv)) * uv;\n");
    break;
  case CG_SWIGLU_GRAD:
    emit_ew(k, b, entry,
            "The swiglu backward over n elements: s = sigmoid(g);\n"
            " * dg = dy u s (1 + g (1 - s)); du = dy g s. Each element is read before it is\n"
            " * written, so dg or du may alias dy, g or u.",
            "float *dg, float *du, const float *dy, const float *g, const float *u, int n", "",
            "      const float d = dy[i], gv = g[i], uv = u[i];\n"
            "      const float s = 1.0f / (1.0f + expf(-gv));\n"
            "      dg[i] = d * uv * s * (1.0f + gv * (1.0f - s));\n"
            "      du[i] = d * gv * s;\n");
    break;
  case CG_ADD_FWD:
    emit_ew(k, b, entry, "y = a + b over n elements. y may alias a or b.",
            "float *y, const float *a, const float *b, int n", "", "      y[i] = a[i] + b[i];\n");
    break;
  case CG_MSE_GRAD:
    emit_ew(k, b, entry,
            "The hidden-MSE gradient: dx = scale 2 (x - t) / sums[1] over n elements,\n"
            " * sums the reduced (sum (x - t)^2, sum t^2) of mse_rows. dx may alias x.",
            "float *dx, const float *x, const float *__restrict__ t, const float *__restrict__ sums, int n,\n"
            "    float scale",
            "  const float c = 2.0f * scale / sums[1];\n", "      dx[i] = c * (x[i] - t[i]);\n");
    break;
  default: break;
  }
}

/* ==== embed and its gradient ==== */

static void emit_embed_fwd(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  prelude(b, k);
  rb_buf_printf(b,
                "#define V %d  /* vocabulary */\n"
                "#define D %d  /* width */\n"
                "#define THREADS %d\n"
                "\n"
                "/* y (T, D) fp32 = table bf16 (V, D) [tokens[t], :]; an id outside [0, V) gives a\n"
                " * zero row. grid (T, ceil(D / THREADS)), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *__restrict__ y, const int *__restrict__ tokens,\n"
                "    const rb_bf16 *__restrict__ table, int T) {\n"
                "  const int t = blockIdx.x;\n"
                "  const int d = blockIdx.y * THREADS + threadIdx.x;\n"
                "  if (t >= T || d >= D) return;\n"
                "  const int tok = tokens[t];\n"
                "  y[(long long)t * D + d] = (tok >= 0 && tok < V) ? rb_bf2f(table[(long long)tok * D + d]) : 0.0f;\n"
                "}\n",
                s->vocab, s->dim, EMB_THREADS, entry);
}

/* Thread d of block row c owns column d of the table rows [c CHUNK, (c+1) CHUNK)
 * and walks the tokens in ascending t: every element's sum runs in row order,
 * with no atomics, and blocks never share an element. */
static void emit_embed_grad(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  prelude(b, k);
  rb_buf_printf(b,
                "#define V %d  /* vocabulary */\n"
                "#define D %d  /* width */\n"
                "#define THREADS %d  /* columns per block */\n"
                "#define CHUNK %d  /* table rows per block row */\n"
                "\n"
                "/* dtable (V, D) += dy (T, D) rows by token: dtable[tokens[t], :] += dy[t, :], t\n"
                " * ascending; ids outside [0, V) contribute nothing (their forward row is 0).\n"
                " * Deterministic: each element has one owner thread, which adds in row order.\n"
                " * A fixed grid (ceil(D / THREADS), ceil(V / CHUNK)), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *__restrict__ dtable, const int *__restrict__ tokens,\n"
                "    const float *__restrict__ dy, int T) {\n"
                "  const int d = blockIdx.x * THREADS + threadIdx.x;\n"
                "  const int v0 = blockIdx.y * CHUNK, v1 = min(v0 + CHUNK, V);\n"
                "  if (d >= D) return;\n"
                "  for (int t = 0; t < T; t++) {\n"
                "    const int tok = tokens[t];\n"
                "    if (tok >= v0 && tok < v1) dtable[(long long)tok * D + d] += dy[(long long)t * D + d];\n"
                "  }\n"
                "}\n",
                s->vocab, s->dim, EMBG_THREADS, embg_chunk(s->vocab), entry);
}

/* ==== rmsnorm and its gradient ==== */

static void emit_rmsnorm_fwd(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  int threads = row_threads(s->dim, 8), per = (s->dim + threads - 1) / threads;
  char eps[48];
  cg_cuda_lit_float(eps, s->eps);
  prelude(b, k);
  rb_buf_printf(b,
                "#define D %d\n"
                "#define THREADS %d\n"
                "#define PER %d  /* elements per thread: i = threadIdx.x + k * THREADS */\n"
                "#define EPS %s\n"
                "\n",
                s->dim, threads, per, eps);
  emit_block_reduce(b);
  rb_buf_printf(b,
                "/* y = x r w per row, r = 1 / sqrt(mean_d x^2 + eps), in fp32. x, y (T, D); w (D).\n"
                " * The row stays in registers, so y may alias x. grid (T), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *y, const float *x, const float *__restrict__ w, int T) {\n"
                "  __shared__ float sh[NWARP];\n"
                "  const int t = blockIdx.x;\n"
                "  if (t >= T) return;\n"
                "  const float *xr = x + (long long)t * D;\n"
                "  float *yr = y + (long long)t * D;\n"
                "  float v[PER];\n"
                "  float ss = 0.0f;\n"
                "#pragma unroll\n"
                "  for (int k = 0; k < PER; k++) {\n"
                "    const int i = threadIdx.x + k * THREADS;\n"
                "    v[k] = i < D ? xr[i] : 0.0f;\n"
                "    ss += v[k] * v[k];\n"
                "  }\n"
                "  ss = rb_block_sum(ss, sh);\n"
                "  const float r = 1.0f / sqrtf(ss / (float)D + EPS);\n"
                "#pragma unroll\n"
                "  for (int k = 0; k < PER; k++) {\n"
                "    const int i = threadIdx.x + k * THREADS;\n"
                "    if (i < D) yr[i] = v[k] * r * w[i];\n"
                "  }\n"
                "}\n",
                entry);
}

static void emit_rmsnorm_grad(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  int threads = row_threads(s->dim, 8), per = (s->dim + threads - 1) / threads;
  char eps[48];
  cg_cuda_lit_float(eps, s->eps);
  prelude(b, k);
  rb_buf_printf(b,
                "#define D %d\n"
                "#define THREADS %d\n"
                "#define PER %d  /* elements per thread: i = threadIdx.x + k * THREADS */\n"
                "#define EPS %s\n"
                "\n",
                s->dim, threads, per, eps);
  emit_block_reduce(b);
  rb_buf_printf(b,
                "/* The rmsnorm backward per row: with u = w dy and r = 1 / sqrt(mean x^2 + eps),\n"
                " * dx = r u - x r^3 (1/D) sum_d x_d u_d. dx, dy, x (T, D); w (D). The row stays\n"
                " * in registers, so dx may alias dy or x. grid (T), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *dx, const float *dy, const float *x, const float *__restrict__ w, int T) {\n"
                "  __shared__ float sh[NWARP];\n"
                "  const int t = blockIdx.x;\n"
                "  if (t >= T) return;\n"
                "  const long long row = (long long)t * D;\n"
                "  float xv[PER], uv[PER];\n"
                "  float ss = 0.0f, sxu = 0.0f;\n"
                "#pragma unroll\n"
                "  for (int k = 0; k < PER; k++) {\n"
                "    const int i = threadIdx.x + k * THREADS;\n"
                "    xv[k] = i < D ? x[row + i] : 0.0f;\n"
                "    uv[k] = i < D ? w[i] * dy[row + i] : 0.0f;\n"
                "    ss += xv[k] * xv[k];\n"
                "    sxu += xv[k] * uv[k];\n"
                "  }\n"
                "  ss = rb_block_sum(ss, sh);\n"
                "  sxu = rb_block_sum(sxu, sh);\n"
                "  const float r = 1.0f / sqrtf(ss / (float)D + EPS);\n"
                "  const float c = r * r * r * (sxu / (float)D);\n"
                "#pragma unroll\n"
                "  for (int k = 0; k < PER; k++) {\n"
                "    const int i = threadIdx.x + k * THREADS;\n"
                "    if (i < D) dx[row + i] = r * uv[k] - xv[k] * c;\n"
                "  }\n"
                "}\n",
                entry);
}

/* ==== heads split / merge with RoPE ==== */

/* One block per row t (one position): the HALF cos/sin of the row go to
 * shared memory once, then the block walks the H * HALF rotation pairs. */
static void emit_heads(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  int split = s->kind == CG_HEADS_SPLIT;
  int threads = row_threads(s->heads * (s->head_dim / 2), 1);
  char theta[48];
  cg_cuda_lit_float(theta, s->rope_theta);
  prelude(b, k);
  rb_buf_printf(b,
                "#define H %d  /* heads */\n"
                "#define HD %d  /* head dim */\n"
                "#define HALF (HD / 2)\n"
                "#define THETA %s\n"
                "#define THREADS %d\n"
                "\n"
                "/* f_j = theta^(-2j/HD) as TRAINING.md spells it, powf(theta, -2.0f * j / HD): the\n"
                " * exponent in fp32, the power in double rounded once to fp32 (the correctly\n"
                " * rounded powf, which CUDA's 2-ulp powf is not). */\n"
                "__device__ __forceinline__ float rb_rope_freq(int j) {\n"
                "  const float e = -2.0f * j / HD;\n"
                "  return (float)pow((double)THETA, (double)e);\n"
                "}\n"
                "\n",
                s->heads, s->head_dim, theta, threads);
  if (split)
    rb_buf_printf(b,
                  "/* x (T, ld), head h at columns h*HD .. h*HD+HD -> y bf16 (T/S, H, S, HD): row t = b S + s\n"
                  " * goes to y[((b H + h) S + s) HD + e]. When rotate, Hugging Face rotate-half RoPE at\n"
                  " * position p = s: a = p f_j in fp32, (x_j, x_{j+HALF}) -> (x_j cos a - x_{j+HALF} sin a,\n"
                  " * x_{j+HALF} cos a + x_j sin a). T is a multiple of S. grid (T), block (THREADS). */\n"
                  "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                  "%s(rb_bf16 *__restrict__ y, const float *__restrict__ x, int ld, int T, int S,\n"
                  "    int rotate) {\n",
                  entry);
  else
    rb_buf_printf(b,
                  "/* The transpose back, fp32: x (T/S, H, S, HD) -> y (T, ld), head h at columns h*HD;\n"
                  " * row t = b S + s reads x[((b H + h) S + s) HD + e]. When rotate, the inverse\n"
                  " * rotation (angle -a, the RoPE backward): (x_j, x_{j+HALF}) -> (x_j cos a +\n"
                  " * x_{j+HALF} sin a, x_{j+HALF} cos a - x_j sin a). grid (T), block (THREADS). */\n"
                  "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                  "%s(float *__restrict__ y, const float *__restrict__ x, int ld, int T, int S, int rotate) {\n",
                  entry);
  rb_buf_printf(b,
                "  __shared__ float cs[HALF], sn[HALF];\n"
                "  const int t = blockIdx.x;\n"
                "  if (t >= T) return;\n"
                "  const int bs = t / S, p = t - bs * S;\n"
                "  if (rotate) {\n"
                "    for (int j = threadIdx.x; j < HALF; j += THREADS) {\n"
                "      float c, sv;\n"
                "      sincosf((float)p * rb_rope_freq(j), &sv, &c);\n"
                "      cs[j] = c;\n"
                "      sn[j] = sv;\n"
                "    }\n"
                "    __syncthreads();\n"
                "  }\n"
                "  for (int q = threadIdx.x; q < H * HALF; q += THREADS) {\n"
                "    const int h = q / HALF, j = q - h * HALF;\n"
                "    const long long hrow = (((long long)bs * H + h) * S + p) * HD;\n"
                "    const long long xrow = (long long)t * ld + h * HD;\n");
  if (split)
    rb_buf_printf(b,
                  "    float x1 = x[xrow + j], x2 = x[xrow + j + HALF];\n"
                  "    if (rotate) {\n"
                  "      const float r1 = x1 * cs[j] - x2 * sn[j];\n"
                  "      x2 = x2 * cs[j] + x1 * sn[j];\n"
                  "      x1 = r1;\n"
                  "    }\n"
                  "    y[hrow + j] = rb_f2bf(x1);\n"
                  "    y[hrow + j + HALF] = rb_f2bf(x2);\n"
                  "  }\n"
                  "}\n");
  else
    rb_buf_printf(b,
                  "    float x1 = x[hrow + j], x2 = x[hrow + j + HALF];\n"
                  "    if (rotate) {\n"
                  "      const float r1 = x1 * cs[j] + x2 * sn[j];\n"
                  "      x2 = x2 * cs[j] - x1 * sn[j];\n"
                  "      x1 = r1;\n"
                  "    }\n"
                  "    y[xrow + j] = x1;\n"
                  "    y[xrow + j + HALF] = x2;\n"
                  "  }\n"
                  "}\n");
}

/* ==== causal softmax and its gradient ==== */

static void emit_softmax(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  char scale[48];
  cg_cuda_lit_float(scale, (float)(1.0 / sqrt((double)s->head_dim)));
  prelude(b, k);
  rb_buf_printf(b,
                "#define HD %d  /* head dim: the scale is 1/sqrt(HD) */\n"
                "#define SCALE %s\n"
                "#define THREADS %d\n"
                "#define SMAX %d  /* the longest row S */\n"
                "#define PER (SMAX / THREADS)  /* columns per thread: j = threadIdx.x + k * THREADS */\n"
                "\n",
                s->head_dim, scale, SM_THREADS, SM_SMAX);
  emit_block_reduce(b);
  if (s->kind == CG_SOFTMAX_FWD)
    rb_buf_printf(b,
                  "/* Causal softmax of rows of S scores (rows = B H S; row r is query position i =\n"
                  " * r mod S): p bf16 (rows, S) = softmax over j <= i of scores / sqrt(HD), 0 for\n"
                  " * j > i. S <= SMAX (a longer row traps). grid (rows), block (THREADS). */\n"
                  "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                  "%s(rb_bf16 *__restrict__ p, const float *__restrict__ scores, int rows, int S) {\n"
                  "  __shared__ float sh[NWARP];\n"
                  "  const int r = blockIdx.x;\n"
                  "  if (r >= rows) return;\n"
                  "  if (S > SMAX) __trap();\n"
                  "  const int i = r %% S;\n"
                  "  const float *sr = scores + (long long)r * S;\n"
                  "  rb_bf16 *pr = p + (long long)r * S;\n"
                  "  float z[PER];\n"
                  "  float m = NEG_INF;\n"
                  "#pragma unroll\n"
                  "  for (int k = 0; k < PER; k++) {\n"
                  "    const int j = threadIdx.x + k * THREADS;\n"
                  "    z[k] = j <= i ? sr[j] * SCALE : NEG_INF;\n"
                  "    m = fmaxf(m, z[k]);\n"
                  "  }\n"
                  "  m = rb_block_max(m, sh);\n"
                  "  float l = 0.0f;\n"
                  "#pragma unroll\n"
                  "  for (int k = 0; k < PER; k++) {\n"
                  "    const int j = threadIdx.x + k * THREADS;\n"
                  "    z[k] = j <= i ? expf(z[k] - m) : 0.0f;\n"
                  "    l += z[k];\n"
                  "  }\n"
                  "  l = rb_block_sum(l, sh);  /* >= 1: the max column gives e^0 */\n"
                  "#pragma unroll\n"
                  "  for (int k = 0; k < PER; k++) {\n"
                  "    const int j = threadIdx.x + k * THREADS;\n"
                  "    if (j < S) pr[j] = j <= i ? rb_f2bf(z[k] / l) : (rb_bf16)0;\n"
                  "  }\n"
                  "}\n",
                  entry);
  else
    rb_buf_printf(b,
                  "/* The softmax backward per row (row r is query position i = r mod S):\n"
                  " * ds bf16 (rows, S) = P (dP - sum_{j<=i} P dP) / sqrt(HD) for j <= i, 0 for j > i;\n"
                  " * p bf16, dp fp32 (rows, S). S <= SMAX (a longer row traps).\n"
                  " * grid (rows), block (THREADS). */\n"
                  "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                  "%s(rb_bf16 *__restrict__ ds, const rb_bf16 *__restrict__ p, const float *__restrict__ dp,\n"
                  "    int rows, int S) {\n"
                  "  __shared__ float sh[NWARP];\n"
                  "  const int r = blockIdx.x;\n"
                  "  if (r >= rows) return;\n"
                  "  if (S > SMAX) __trap();\n"
                  "  const int i = r %% S;\n"
                  "  const long long row = (long long)r * S;\n"
                  "  float pv[PER], dv[PER];\n"
                  "  float acc = 0.0f;\n"
                  "#pragma unroll\n"
                  "  for (int k = 0; k < PER; k++) {\n"
                  "    const int j = threadIdx.x + k * THREADS;\n"
                  "    pv[k] = j <= i ? rb_bf2f(p[row + j]) : 0.0f;\n"
                  "    dv[k] = j <= i ? dp[row + j] : 0.0f;\n"
                  "    acc += pv[k] * dv[k];\n"
                  "  }\n"
                  "  acc = rb_block_sum(acc, sh);\n"
                  "#pragma unroll\n"
                  "  for (int k = 0; k < PER; k++) {\n"
                  "    const int j = threadIdx.x + k * THREADS;\n"
                  "    if (j < S) ds[row + j] = j <= i ? rb_f2bf(pv[k] * (dv[k] - acc) * SCALE) : (rb_bf16)0;\n"
                  "  }\n"
                  "}\n",
                  entry);
}

/* ==== the KL loss ==== */

/* One block per row of V, three passes over the row: the maxima, the
 * partition functions, then the loss terms and the gradient together. The
 * reads of pass 2 end at its block sums (which synchronize) before pass 3
 * writes, and pass 3 reads each element before the same thread writes it:
 * dlogits may alias logits. The loss sums p (log p - log q) term by term
 * rather than from the partition functions, so nothing large cancels. */
static void emit_kl_loss(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  prelude(b, k);
  rb_buf_printf(b,
                "#define V %d  /* vocabulary: the row width */\n"
                "#define THREADS %d\n"
                "\n",
                s->vocab, row_threads(s->vocab, 8));
  emit_block_reduce(b);
  rb_buf_printf(b,
                "/* Per row t of logits and teacher (T, V), p = softmax(teacher), q = softmax(logits):\n"
                " * row_loss[t] = sum_v p (log p - log q); dlogits (T, V) = (q - p) grad_scale.\n"
                " * dlogits may alias logits. grid (T), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *dlogits, float *__restrict__ row_loss, const float *logits,\n"
                "    const float *__restrict__ teacher, int T, float grad_scale) {\n"
                "  __shared__ float sh[NWARP];\n"
                "  const int t = blockIdx.x;\n"
                "  if (t >= T) return;\n"
                "  const long long row = (long long)t * V;\n"
                "  const float *lr = logits + row;\n"
                "  const float *tr = teacher + row;\n"
                "  float *dr = dlogits + row;\n"
                "\n"
                "  /* Pass 1: the maxima. */\n"
                "  float ml = NEG_INF, mt = NEG_INF;\n"
                "  for (int v = threadIdx.x; v < V; v += THREADS) {\n"
                "    ml = fmaxf(ml, lr[v]);\n"
                "    mt = fmaxf(mt, tr[v]);\n"
                "  }\n"
                "  ml = rb_block_max(ml, sh);\n"
                "  mt = rb_block_max(mt, sh);\n"
                "\n"
                "  /* Pass 2: the partition functions, to the log-normalizers. */\n"
                "  float zq = 0.0f, zp = 0.0f;\n"
                "  for (int v = threadIdx.x; v < V; v += THREADS) {\n"
                "    zq += expf(lr[v] - ml);\n"
                "    zp += expf(tr[v] - mt);\n"
                "  }\n"
                "  zq = rb_block_sum(zq, sh);\n"
                "  zp = rb_block_sum(zp, sh);  /* every read of pass 2 is done past this barrier */\n"
                "  const float nq = ml + logf(zq), np = mt + logf(zp);\n"
                "\n"
                "  /* Pass 3: log q, log p; the loss terms and the gradient, each element read\n"
                "   * before it is written. */\n"
                "  float kl = 0.0f;\n"
                "  for (int v = threadIdx.x; v < V; v += THREADS) {\n"
                "    const float lq = lr[v] - nq, lp = tr[v] - np;\n"
                "    const float q = expf(lq), pv = expf(lp);\n"
                "    kl += pv * (lp - lq);\n"
                "    dr[v] = (q - pv) * grad_scale;\n"
                "  }\n"
                "  kl = rb_block_sum(kl, sh);\n"
                "  if (threadIdx.x == 0) row_loss[t] = kl;\n"
                "}\n"
                "\n",
                entry);
}

/* ==== the calibration: cross-entropy and column means of |x| ==== */

static void emit_ce_loss(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  prelude(b, k);
  rb_buf_printf(b,
                "#define V %d  /* vocabulary: the row width */\n"
                "#define THREADS %d\n"
                "\n",
                s->vocab, row_threads(s->vocab, 8));
  emit_block_reduce(b);
  rb_buf_printf(b,
                "/* Per row t of logits (T, V) with target y = targets[t]: row_loss[t] = log sum exp - logits[y];\n"
                " * dlogits = (softmax - onehot(y)) grad_scale; y < 0: no target, 0 and 0. dlogits may alias\n"
                " * logits. grid (T), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *dlogits, float *__restrict__ row_loss, const float *logits,\n"
                "    const int *__restrict__ targets, int T, float grad_scale) {\n"
                "  __shared__ float sh[NWARP];\n"
                "  const int t = blockIdx.x;\n"
                "  if (t >= T) return;\n"
                "  const long long row = (long long)t * V;\n"
                "  const float *lr = logits + row;\n"
                "  float *dr = dlogits + row;\n"
                "  const int y = targets[t];\n"
                "  if (y < 0 || y >= V) {\n"
                "    for (int v = threadIdx.x; v < V; v += THREADS) dr[v] = 0.0f;\n"
                "    if (threadIdx.x == 0) row_loss[t] = 0.0f;\n"
                "    return;\n"
                "  }\n"
                "  float m = NEG_INF;\n"
                "  for (int v = threadIdx.x; v < V; v += THREADS) m = fmaxf(m, lr[v]);\n"
                "  m = rb_block_max(m, sh);\n"
                "  float z = 0.0f;\n"
                "  for (int v = threadIdx.x; v < V; v += THREADS) z += expf(lr[v] - m);\n"
                "  z = rb_block_sum(z, sh);  /* every read of the row's target is done past this barrier too */\n"
                "  const float lse = m + logf(z), ly = lr[y];\n"
                "  __syncthreads();\n"
                "  for (int v = threadIdx.x; v < V; v += THREADS) {\n"
                "    const float q = expf(lr[v] - lse);\n"
                "    dr[v] = (q - (v == y ? 1.0f : 0.0f)) * grad_scale;\n"
                "  }\n"
                "  if (threadIdx.x == 0) row_loss[t] = lse - ly;\n"
                "}\n"
                "\n",
                entry);
}

#define COLABS_THREADS 256

static void emit_col_abs(const CgKernel *k, RbBuf *b, const char *entry) {
  prelude(b, k);
  rb_buf_printf(b,
                "#define PARTS %d\n"
                "\n"
                "/* parts (PARTS, m): part c = sum of |x[t, j]| over rows t = c, c + PARTS, ... of x (T, m), in\n"
                " * ascending t (deterministic). grid (ceil(m / %d), PARTS), block (%d). */\n"
                "extern \"C\" __global__ void __launch_bounds__(%d)\n"
                "%s(float *__restrict__ parts, const float *__restrict__ x, int T, int m) {\n"
                "  const int j = blockIdx.x * %d + threadIdx.x;\n"
                "  const int c = blockIdx.y;\n"
                "  if (j >= m) return;\n"
                "  float acc = 0.0f;\n"
                "  for (int t = c; t < T; t += PARTS) acc += fabsf(x[(long long)t * m + j]);\n"
                "  parts[(long long)c * m + j] = acc;\n"
                "}\n",
                CG_COL_ABS_PARTS, COLABS_THREADS, COLABS_THREADS, COLABS_THREADS, entry, COLABS_THREADS);
}

/* ==== the hidden MSE's row sums ==== */

static void emit_mse_rows(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  prelude(b, k);
  rb_buf_printf(b,
                "#define D %d\n"
                "#define THREADS %d\n"
                "\n",
                s->dim, row_threads(s->dim, 8));
  emit_block_reduce(b);
  rb_buf_printf(b,
                "/* parts (T, 2) = (sum_d (x - t)^2, sum_d t^2) per row of x, t (T, D).\n"
                " * grid (T), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *__restrict__ parts, const float *__restrict__ x, const float *__restrict__ t, int T) {\n"
                "  __shared__ float sh[NWARP];\n"
                "  const int r = blockIdx.x;\n"
                "  if (r >= T) return;\n"
                "  const long long row = (long long)r * D;\n"
                "  float se = 0.0f, st = 0.0f;\n"
                "  for (int i = threadIdx.x; i < D; i += THREADS) {\n"
                "    const float tv = t[row + i], d = x[row + i] - tv;\n"
                "    se += d * d;\n"
                "    st += tv * tv;\n"
                "  }\n"
                "  se = rb_block_sum(se, sh);\n"
                "  st = rb_block_sum(st, sh);\n"
                "  if (threadIdx.x == 0) {\n"
                "    parts[2 * (long long)r] = se;\n"
                "    parts[2 * (long long)r + 1] = st;\n"
                "  }\n"
                "}\n",
                entry);
}

/* ==== reduce, sumsq ==== */

static void emit_reduce(const CgKernel *k, RbBuf *b, const char *entry) {
  prelude(b, k);
  rb_buf_printf(b, "#define THREADS %d\n\n", RED_THREADS);
  emit_block_reduce_d(b);
  rb_buf_printf(b,
                "/* out (m) = sum over r < rows of in (rows, m): block j sums column j, thread i\n"
                " * the rows i, i + THREADS, ... in order (in double), then the fixed block tree;\n"
                " * the same bits on every run. grid (m), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *__restrict__ out, const float *__restrict__ in, int rows, int m) {\n"
                "  __shared__ double sh[NWARP];\n"
                "  const int j = blockIdx.x;\n"
                "  if (j >= m) return;\n"
                "  double s = 0.0;\n"
                "  for (int r = threadIdx.x; r < rows; r += THREADS) s += (double)in[(long long)r * m + j];\n"
                "  s = rb_block_sum_d(s, sh);\n"
                "  if (threadIdx.x == 0) out[j] = (float)s;\n"
                "}\n",
                entry);
}

static void emit_sumsq(const CgKernel *k, RbBuf *b, const char *entry) {
  prelude(b, k);
  rb_buf_printf(b,
                "#define THREADS %d\n"
                "#define PARTS %d  /* the fixed grid: one partial per block */\n"
                "\n",
                SQ_THREADS, CG_SUMSQ_PARTS);
  emit_block_reduce_d(b);
  rb_buf_printf(b,
                "/* parts[c] = sum of x^2 over the elements i = (c + k PARTS) THREADS + thread, k = 0, 1, ...\n"
                " * of x (n), in double, then the fixed block tree; reduce the PARTS partials with\n"
                " * reduce. The same bits on every run. A fixed grid (PARTS), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *__restrict__ parts, const float *__restrict__ x, long long n) {\n"
                "  __shared__ double sh[NWARP];\n"
                "  double s = 0.0;\n"
                "  for (long long i = (long long)blockIdx.x * THREADS + threadIdx.x; i < n;\n"
                "       i += (long long)PARTS * THREADS) {\n"
                "    const double v = (double)x[i];\n"
                "    s += v * v;\n"
                "  }\n"
                "  s = rb_block_sum_d(s, sh);\n"
                "  if (threadIdx.x == 0) parts[blockIdx.x] = (float)s;\n"
                "}\n",
                entry);
}

/* ==== entry points ==== */

/* The entry name: the kind and the integer dims the kernel is specialized on;
 * hashed where its description holds a float the name leaves out (eps, theta). */
static void train_entry(const CgKernel *k, char entry[CG_ENTRY_MAX]) {
  const CgOp *s = &k->op;
  char name[160];
  int hashed = 0;
  switch (s->kind) {
  case CG_EMBED_FWD: snprintf(name, sizeof name, "rb_embed_fwd_v%d_d%d", s->vocab, s->dim); break;
  case CG_EMBED_GRAD: snprintf(name, sizeof name, "rb_embed_grad_v%d_d%d", s->vocab, s->dim); break;
  case CG_RMSNORM_FWD: snprintf(name, sizeof name, "rb_rmsnorm_fwd_d%d", s->dim), hashed = 1; break;
  case CG_RMSNORM_GRAD: snprintf(name, sizeof name, "rb_rmsnorm_grad_d%d", s->dim), hashed = 1; break;
  case CG_HEADS_SPLIT:
    snprintf(name, sizeof name, "rb_heads_split_h%d_hd%d", s->heads, s->head_dim), hashed = 1;
    break;
  case CG_HEADS_MERGE:
    snprintf(name, sizeof name, "rb_heads_merge_h%d_hd%d", s->heads, s->head_dim), hashed = 1;
    break;
  case CG_SOFTMAX_FWD: snprintf(name, sizeof name, "rb_softmax_fwd_hd%d", s->head_dim); break;
  case CG_SOFTMAX_GRAD: snprintf(name, sizeof name, "rb_softmax_grad_hd%d", s->head_dim); break;
  case CG_KL_LOSS: snprintf(name, sizeof name, "rb_kl_loss_v%d", s->vocab); break;
  case CG_CE_LOSS: snprintf(name, sizeof name, "rb_ce_loss_v%d", s->vocab); break;
  case CG_MSE_ROWS: snprintf(name, sizeof name, "rb_mse_rows_d%d", s->dim); break;
  default: snprintf(name, sizeof name, "rb_%s", cg_kind_name(s->kind)); break; /* no dims: cast_bf16, ... */
  }
  cg_cuda_entry(k, name, hashed, entry);
}

/* Emit the canonical source of a training op kernel into src and its entry
 * name into entry. RB_EUSER with a message in err for dims the kernels cannot
 * take; RB_EINTERNAL if src ran out of memory. One schedule each: k->sched is unused. */
int cg_emit_train_op(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  int rc = train_check(&k->op, err);
  if (rc) return rc;
  train_entry(k, entry);
  switch (k->op.kind) {
  case CG_CAST_BF16:
  case CG_SWIGLU_FWD:
  case CG_SWIGLU_GRAD:
  case CG_ADD_FWD:
  case CG_MSE_GRAD: emit_elementwise(k, src, entry); break;
  case CG_EMBED_FWD: emit_embed_fwd(k, src, entry); break;
  case CG_EMBED_GRAD: emit_embed_grad(k, src, entry); break;
  case CG_RMSNORM_FWD: emit_rmsnorm_fwd(k, src, entry); break;
  case CG_RMSNORM_GRAD: emit_rmsnorm_grad(k, src, entry); break;
  case CG_HEADS_SPLIT:
  case CG_HEADS_MERGE: emit_heads(k, src, entry); break;
  case CG_SOFTMAX_FWD:
  case CG_SOFTMAX_GRAD: emit_softmax(k, src, entry); break;
  case CG_KL_LOSS: emit_kl_loss(k, src, entry); break;
  case CG_CE_LOSS: emit_ce_loss(k, src, entry); break;
  case CG_COL_ABS: emit_col_abs(k, src, entry); break;
  case CG_MSE_ROWS: emit_mse_rows(k, src, entry); break;
  case CG_REDUCE: emit_reduce(k, src, entry); break;
  case CG_SUMSQ: emit_sumsq(k, src, entry); break;
  default: return RB_EUSER; /* train_check rejected it already */
  }
  if (src->oom) {
    rb_buf_printf(err, "cg_emit_train_op: out of memory emitting %s", entry);
    return RB_EINTERNAL;
  }
  return RB_OK;
}

/* Launch geometry: n is the extent codegen.h names per kind (T rows, n
 * elements, rows, m outputs); embed_grad and sumsq have a fixed grid (pass 1). */
int cg_geometry_train_op(const CgKernel *k, CgGeometry *g, RbBuf *err) {
  const CgOp *s = &k->op;
  memset(g, 0, sizeof *g);
  int rc = train_check(s, err);
  if (rc) return rc;
  g->grid[0] = g->grid[1] = g->grid[2] = 1;
  g->block[0] = g->block[1] = g->block[2] = 1;
  g->grow_axis = 0;
  g->n_per_block = 1;
  switch (s->kind) {
  case CG_CAST_BF16:
  case CG_SWIGLU_FWD:
  case CG_SWIGLU_GRAD:
  case CG_ADD_FWD:
  case CG_MSE_GRAD:
    g->block[0] = EW_THREADS;
    g->n_per_block = EW_THREADS * EW_PER;
    break;
  case CG_EMBED_FWD:
    g->grid[1] = (unsigned)((s->dim + EMB_THREADS - 1) / EMB_THREADS);
    g->block[0] = EMB_THREADS;
    break;
  case CG_EMBED_GRAD: {
    int chunk = embg_chunk(s->vocab);
    g->grid[0] = (unsigned)((s->dim + EMBG_THREADS - 1) / EMBG_THREADS);
    g->grid[1] = (unsigned)((s->vocab + chunk - 1) / chunk);
    g->block[0] = EMBG_THREADS;
    g->grow_axis = -1;
    break;
  }
  case CG_RMSNORM_FWD:
  case CG_RMSNORM_GRAD:
  case CG_MSE_ROWS: g->block[0] = (unsigned)row_threads(s->dim, 8); break;
  case CG_HEADS_SPLIT:
  case CG_HEADS_MERGE: g->block[0] = (unsigned)row_threads(s->heads * (s->head_dim / 2), 1); break;
  case CG_SOFTMAX_FWD:
  case CG_SOFTMAX_GRAD: g->block[0] = SM_THREADS; break;
  case CG_KL_LOSS:
  case CG_CE_LOSS: g->block[0] = (unsigned)row_threads(s->vocab, 8); break;
  case CG_COL_ABS:
    g->grid[1] = CG_COL_ABS_PARTS;
    g->block[0] = COLABS_THREADS;
    g->n_per_block = COLABS_THREADS;
    break;
  case CG_REDUCE: g->block[0] = RED_THREADS; break;
  case CG_SUMSQ:
    g->grid[0] = CG_SUMSQ_PARTS;
    g->block[0] = SQ_THREADS;
    g->grow_axis = -1;
    break;
  default: return RB_EUSER;
  }
  return RB_OK;
}

/* ==== argument marshalling: the ABI of codegen.h, in the order the kernels declare ==== */

void cg_cast_argv(CgCastArgs *a, CgArgv *o) { CG_ARGV(o, &a->y, &a->x, &a->n); }
void cg_embed_fwd_argv(CgEmbedFwdArgs *a, CgArgv *o) { CG_ARGV(o, &a->y, &a->tokens, &a->table, &a->T); }
void cg_embed_grad_argv(CgEmbedGradArgs *a, CgArgv *o) { CG_ARGV(o, &a->dtable, &a->tokens, &a->dy, &a->T); }
void cg_rmsnorm_fwd_argv(CgRmsnormFwdArgs *a, CgArgv *o) { CG_ARGV(o, &a->y, &a->x, &a->w, &a->T); }
void cg_rmsnorm_grad_argv(CgRmsnormGradArgs *a, CgArgv *o) { CG_ARGV(o, &a->dx, &a->dy, &a->x, &a->w, &a->T); }
void cg_heads_split_argv(CgHeadsSplitArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->y, &a->x, &a->ld, &a->T, &a->S, &a->rotate);
}
void cg_heads_merge_argv(CgHeadsMergeArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->y, &a->x, &a->ld, &a->T, &a->S, &a->rotate);
}
void cg_softmax_fwd_argv(CgSoftmaxFwdArgs *a, CgArgv *o) { CG_ARGV(o, &a->p, &a->scores, &a->rows, &a->S); }
void cg_softmax_grad_argv(CgSoftmaxGradArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->ds, &a->p, &a->dp, &a->rows, &a->S);
}
void cg_swiglu_fwd_argv(CgSwigluFwdArgs *a, CgArgv *o) { CG_ARGV(o, &a->y, &a->g, &a->u, &a->n); }
void cg_swiglu_grad_argv(CgSwigluGradArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->dg, &a->du, &a->dy, &a->g, &a->u, &a->n);
}
void cg_add_fwd_argv(CgAddFwdArgs *a, CgArgv *o) { CG_ARGV(o, &a->y, &a->a, &a->b, &a->n); }
void cg_kl_loss_argv(CgKlLossArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->dlogits, &a->row_loss, &a->logits, &a->teacher, &a->T, &a->grad_scale);
}
void cg_mse_rows_argv(CgMseRowsArgs *a, CgArgv *o) { CG_ARGV(o, &a->parts, &a->x, &a->t, &a->T); }
void cg_mse_grad_argv(CgMseGradArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->dx, &a->x, &a->t, &a->sums, &a->n, &a->scale);
}
void cg_reduce_argv(CgReduceArgs *a, CgArgv *o) { CG_ARGV(o, &a->out, &a->in, &a->rows, &a->m); }
void cg_sumsq_argv(CgSumsqArgs *a, CgArgv *o) { CG_ARGV(o, &a->parts, &a->x, &a->n); }
void cg_ce_loss_argv(CgCeLossArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->dlogits, &a->row_loss, &a->logits, &a->targets, &a->T, &a->grad_scale);
}
void cg_col_abs_argv(CgColAbsArgs *a, CgArgv *o) { CG_ARGV(o, &a->parts, &a->x, &a->T, &a->m); }
