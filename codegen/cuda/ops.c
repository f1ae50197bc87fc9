/* ops.c: emitters for the decoder ops around the linears: embed, rmsnorm,
 * rope_kv, attention, swiglu and add; and nll, evaluation's loss on the
 * returned logits. Every kernel starts with the prelude of
 * prelude.c, is specialized on the spec's dims (#define constants), keeps
 * fp16 in memory as raw IEEE half bits, does its math in fp32, and includes no
 * header at all. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"

/* ==== emission helpers ==== */

/* A C++ double literal that reads back as exactly v. */
static void lit_double(char out[48], double v) {
  snprintf(out, 48, "%.17g", v);
  if (!strpbrk(out, ".e")) strcat(out, ".0");
}

static int round_up(int v, int m) { return (v + m - 1) / m * m; }

/* Smallest power of two >= v (v >= 1). */
static int pow2_ceil(int v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}

/* ==== spec checks ==== */

/* cg_op_check, then this target's own limit: attention reads head_dim in 16-byte
 * chunks of 8 halves per lane, and the cross-warp merge keeps 16 warps x head_dim
 * floats in static shared memory. */
static int op_check(const CgOp *s, RbBuf *err) {
  int rc = cg_op_check(s, err);
  if (rc == RB_OK && s->kind == CG_ATTENTION && (s->head_dim % 8 || s->head_dim > 512)) {
    rb_buf_printf(err, "attention: head_dim (%d) must be a multiple of 8 and at most 512", s->head_dim);
    rc = RB_EUSER;
  }
  return rc;
}

/* ==== embed ==== */

#define EMBED_THREADS 256

/* y (T, D) = table[tokens[t]]; one thread per element so that a single decode
 * token still spreads over D/256 blocks. */
static void emit_embed(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  cg_cuda_prelude(b, k, "codegen/cuda/ops.c");
  rb_buf_printf(b,
                "#define V %d  /* vocabulary */\n"
                "#define D %d  /* width */\n"
                "\n"
                "/* y (T, D) = table[tokens[t], :]; grid (ceil(D / %d), T). */\n"
                "extern \"C\" __global__ void __launch_bounds__(%d)\n"
                "%s(rb_half *__restrict__ y, const int *__restrict__ tokens,\n"
                "    const rb_half *__restrict__ table, int T) {\n"
"  rb_grid_enter();\n"
                "  const int d = blockIdx.x * %d + threadIdx.x;\n"
                "  const int t = blockIdx.y;\n"
                "  if (d >= D || t >= T) return;\n"
                "  const int tok = tokens[t];\n"
                "  /* An id outside the vocabulary gives a zero row rather than a read outside the table. */\n"
                "  y[(long long)t * D + d] = (tok >= 0 && tok < V) ? table[(long long)tok * D + d] : (rb_half)0;\n"
                "}\n",
                s->vocab, s->dim, EMBED_THREADS, EMBED_THREADS, entry, EMBED_THREADS);
}

/* ==== rmsnorm ==== */

/* Threads for a row of D: about 8 elements each, whole warps, at most 1024. */
static int rmsnorm_threads(int D) {
  int t = round_up((D + 7) / 8, 32);
  return t > 1024 ? 1024 : t;
}

/* One block per row. Each thread keeps its PER elements in registers, so the
 * row is read once and y may alias x (in place). */
static void emit_rmsnorm(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  int threads = rmsnorm_threads(s->dim);
  int per = (s->dim + threads - 1) / threads;
  char eps[48], invd[48];
  cg_cuda_lit_float(eps, s->eps);
  cg_cuda_lit_float(invd, (float)(1.0 / s->dim));
  cg_cuda_prelude(b, k, "codegen/cuda/ops.c");
  rb_buf_printf(b,
                "#define D %d\n"
                "#define THREADS %d\n"
                "#define PER %d  /* elements per thread: i = threadIdx.x + k * THREADS */\n"
                "#define NWARP (THREADS / 32)\n"
                "#define EPS %s\n"
                "#define INV_D %s\n"
                "\n"
                "/* y = x * rsqrt(mean(x^2) + eps) * w per row (Hugging Face LlamaRMSNorm, in fp32).\n"
                " * x, y (T, D); w (D); grid (T), block (THREADS). y may alias x. */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(rb_half *y, const rb_half *x, const rb_half *__restrict__ w, int T) {\n"
                "  /* weights first: w is no kernel's output, so its loads go out before the wait\n"
                "   * for the previous kernel (the bits streamed since the last norm evicted it). */\n"
                "  float wv[PER];\n"
                "#pragma unroll\n"
                "  for (int k = 0; k < PER; k++) {\n"
                "    const int i = threadIdx.x + k * THREADS;\n"
                "    wv[k] = i < D ? rb_h2f(w[i]) : 0.0f;\n"
                "  }\n"
                "  rb_grid_enter();\n"
                "  const int t = blockIdx.x;\n"
                "  if (t >= T) return;\n"
                "  const rb_half *xr = x + (long long)t * D;\n"
                "  rb_half *yr = y + (long long)t * D;\n"
                "\n"
                "  float v[PER];\n"
                "  float ss = 0.0f;\n"
                "#pragma unroll\n"
                "  for (int k = 0; k < PER; k++) {\n"
                "    const int i = threadIdx.x + k * THREADS;\n"
                "    v[k] = i < D ? rb_h2f(xr[i]) : 0.0f;\n"
                "    ss += v[k] * v[k];\n"
                "  }\n"
                "\n"
                "  /* Sum of squares over the block: warps by shuffle, then across warps. */\n"
                "#pragma unroll\n"
                "  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);\n"
                "  __shared__ float part[NWARP];\n"
                "  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;\n"
                "  __syncthreads();\n"
                "  ss = 0.0f;\n"
                "#pragma unroll\n"
                "  for (int i = 0; i < NWARP; i++) ss += part[i];  /* same order in every thread */\n"
                "  const float r = rsqrtf(ss * INV_D + EPS);\n"
                "\n"
                "#pragma unroll\n"
                "  for (int k = 0; k < PER; k++) {\n"
                "    const int i = threadIdx.x + k * THREADS;\n"
                "    if (i < D) yr[i] = rb_f2h(v[k] * r * wv[k]);\n"
                "  }\n"
                "}\n",
                s->dim, threads, per, eps, invd, entry);
}

/* ==== rope_kv ==== */

/* Block (t, head) over the H query heads then the HKV key heads; thread j
 * rotates the pair (j, j + HD/2). Key-head blocks also copy the value head, so
 * one launch fills both caches. */
static void emit_rope_kv(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  char nl2[48];
  /* inv_freq_j = theta^(-2j/HD) = exp2(j * NEG_L2), evaluated in double on the device. */
  lit_double(nl2, -2.0 * log2((double)s->rope_theta) / s->head_dim);
  int half = s->head_dim / 2, threads = half < 256 ? half : 256;
  cg_cuda_prelude(b, k, "codegen/cuda/ops.c");
  rb_buf_printf(b,
                "#define H %d  /* query heads */\n"
                "#define HKV %d  /* key/value heads */\n"
                "#define HD %d  /* head dim */\n"
                "#define HALF (HD / 2)\n"
                "#define CTX %d  /* cache capacity: caches are (HKV, CTX, HD) */\n"
                "#define NEG_L2 (%s)  /* -2 * log2(theta) / HD */\n"
                "\n"
                "/* cos and sin of pos * theta^(-2j/HD). The angle is formed and reduced to\n"
                " * [-pi, pi] in double, so long positions keep full fp32 accuracy (and a\n"
                " * fast-math sincos stays accurate on the reduced range). */\n"
                "__device__ __forceinline__ void rb_rope_cs(int pos, int j, float *c, float *s) {\n"
                "  double a = (double)pos * exp2((double)j * NEG_L2);\n"
                "  a -= 6.283185307179586 * rint(a * 0.15915494309189535);\n"
                "  sincosf((float)a, s, c);\n"
                "}\n"
                "\n"
                "/* Hugging Face rotate-half RoPE for positions pos0 .. pos0+T-1, pos0 = *pos0p\n"
                " * (read on the device, so a captured decode step replays at any position):\n"
                " *   q (T, ldq), heads at h*HD, rotated in place;\n"
                " *   k (T, ldk), v (T, ldv), heads at g*HD, rotated k and plain v stored at\n"
                " *   kcache/vcache[g, pos0+t, :]. Positions >= CTX are not stored.\n"
                " * grid (T, H + HKV), block (%d). */\n"
                "extern \"C\" __global__ void __launch_bounds__(%d)\n"
                "%s(rb_half *q, int ldq, const rb_half *__restrict__ k, int ldk,\n"
                "    const rb_half *__restrict__ v, int ldv, rb_half *__restrict__ kcache,\n"
                "    rb_half *__restrict__ vcache, const int *__restrict__ pos0p, int T) {\n"
"  rb_grid_enter();\n"
                "  const int t = blockIdx.x, head = blockIdx.y;\n"
                "  if (t >= T || head >= H + HKV) return;\n"
                "  const int pos = *pos0p + t;\n"
                "  for (int j = threadIdx.x; j < HALF; j += blockDim.x) {\n"
                "    float c, s;\n"
                "    rb_rope_cs(pos, j, &c, &s);\n"
                "    if (head < H) {\n"
                "      rb_half *p = q + (long long)t * ldq + head * HD;\n"
                "      const float x1 = rb_h2f(p[j]), x2 = rb_h2f(p[j + HALF]);\n"
                "      p[j] = rb_f2h(x1 * c - x2 * s);\n"
                "      p[j + HALF] = rb_f2h(x2 * c + x1 * s);\n"
                "    } else if (pos < CTX) {\n"
                "      const int g = head - H;\n"
                "      const rb_half *kp = k + (long long)t * ldk + g * HD;\n"
                "      const rb_half *vp = v + (long long)t * ldv + g * HD;\n"
                "      const long long row = ((long long)g * CTX + pos) * HD;\n"
                "      const float x1 = rb_h2f(kp[j]), x2 = rb_h2f(kp[j + HALF]);\n"
                "      kcache[row + j] = rb_f2h(x1 * c - x2 * s);\n"
                "      kcache[row + j + HALF] = rb_f2h(x2 * c + x1 * s);\n"
                "      vcache[row + j] = vp[j];\n"
                "      vcache[row + j + HALF] = vp[j + HALF];\n"
                "    }\n"
                "  }\n"
                "}\n",
                s->heads, s->kv_heads, s->head_dim, s->max_ctx, nl2, threads, threads, entry);
}

/* ==== attention ==== */

#define ATT_MAXW 16      /* warps per block for decode (T <= ATT_SMALL) */
#define ATT_PREFILL_W 4  /* warps per block when T > ATT_SMALL: there are T*H blocks to fill the GPU */
#define ATT_U 4          /* keys per lane group per iteration: loads in flight */
#define ATT_SMALL 4      /* rows up to which a launch is a decode: the context split over blocks */
#define ATT_MAXSPLIT 32  /* most blocks one (head, token) is split over */
#define ATT_FILL 128     /* the default split gives about this many blocks (H200: 132 SMs) */

/* Context splits of a decode launch: the schedule's tile[0], or enough to give
 * about ATT_FILL blocks, never a split shorter than 64 keys of a full cache. */
static int att_splits(const CgKernel *k) {
  const CgOp *s = &k->op;
  int n = k->sched.tile[0] ? k->sched.tile[0] : (ATT_FILL + s->heads - 1) / s->heads;
  int most = (s->max_ctx + 63) / 64;
  if (n > most) n = most;
  return n < 1 ? 1 : n > ATT_MAXSPLIT ? ATT_MAXSPLIT : n;
}

/* Lanes scoring one key (G): a power of two covering the head's 16-byte chunks, at most a warp. */
static int att_lanes_per_key(const CgOp *s) {
  int g = pow2_ceil(s->head_dim / 8);
  return g < 32 ? g : 32;
}

/* Keys a warp scores per iteration: 32 / G lane groups of U keys each. */
static int att_keys_per_warp(const CgOp *s) { return 32 / att_lanes_per_key(s) * ATT_U; }

/* One block per (query head, token, context split). Within a block the keys
 * are spread over the warps: each group of G lanes scores one key (every lane
 * holds 8*CPL dims of q, k and v, 16-byte loads) and keeps an online softmax
 * of its keys; groups merge by shuffles, warps through shared memory, in a
 * fixed order. A decode launch (T <= NSMALL) splits the context over up to
 * gridDim.x / H blocks besides (flash-decoding), as many as its keys fill: each
 * writes its softmax state to the workspace, and the last of them to arrive
 * merges all of them in split order. Results never depend on scheduling. */
static void emit_attention(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  int hd = s->head_dim, nchunk = hd / 8;
  int G = att_lanes_per_key(s);
  int cpl = (nchunk + G - 1) / G;
  char scl[48];
  /* Scores go to base 2 (exp2f is one MUFU op): log2(e) / sqrt(HD) folded into q. */
  cg_cuda_lit_float(scl, (float)(1.4426950408889634 / sqrt((double)hd)));
  cg_cuda_prelude(b, k, "codegen/cuda/ops.c");
  rb_buf_printf(b,
                "#define H %d  /* query heads */\n"
                "#define HKV %d  /* key/value heads */\n"
                "#define HD %d  /* head dim */\n"
                "#define CTX %d  /* cache capacity: caches are (HKV, CTX, HD) */\n"
                "#define GROUP (H / HKV)  /* query heads sharing a kv head (GQA) */\n"
                "#define NCHUNK (HD / 8)  /* 16-byte chunks in a head row */\n"
                "#define G %d  /* lanes per key (power of two >= NCHUNK, <= 32) */\n"
                "#define CPL %d  /* chunks per lane: gl, gl + G, ... */\n"
                "#define KPW (32 / G)  /* keys a warp scores at once */\n"
                "#define U %d  /* keys per lane group per iteration */\n"
                "#define MAXW %d  /* most warps per block */\n"
                "#define NSMALL %d  /* a launch of at most NSMALL rows may split the context */\n"
                "#define MAXSPLIT %d  /* most context splits */\n"
                "#define SCALE_LOG2 %s  /* log2(e) / sqrt(HD) */\n"
                "#define NEG_BIG (-1e30f)  /* finite \"-inf\": merging two empty states stays NaN-free */\n"
                "\n"
                "struct alignas(16) rb_chunk { unsigned int w[4]; };  /* 8 halves */\n"
                "\n"
                "__device__ __forceinline__ void rb_unpack8(const rb_chunk &c, float f[8]) {\n"
                "#pragma unroll\n"
                "  for (int i = 0; i < 4; i++) {\n"
                "    f[2 * i] = rb_h2f((rb_half)(c.w[i] & 0xffffu));\n"
                "    f[2 * i + 1] = rb_h2f((rb_half)(c.w[i] >> 16));\n"
                "  }\n"
                "}\n"
                "\n",
                s->heads, s->kv_heads, hd, s->max_ctx, G, cpl, ATT_U, ATT_MAXW, ATT_SMALL, ATT_MAXSPLIT, scl);
  rb_buf_printf(
      b,
      "/* Causal GQA attention over the caches, softmax scale 1/sqrt(HD): query t\n"
      " * (position pos0+t) of head h attends to cache positions 0 .. pos0+t of kv\n"
      " * head h / GROUP. q (T, ldq) with heads at h*HD, already rotated; out (T, H*HD).\n"
      " * pos0 = *pos0p is read on the device, so a captured decode step replays anywhere.\n"
      " * grid (H * ngrid, T), block (32 * warps), warps <= MAXW; ngrid > 1 only when\n"
      " * T <= NSMALL. ws: (NSMALL, H) arrival counters, zero between launches, then\n"
      " * (NSMALL, H, ngrid, 2 + HD) floats of split states (m, l, unnormalized out). */\n"
      "extern \"C\" __global__ void __launch_bounds__(32 * MAXW)\n"
      "%s(rb_half *__restrict__ out, const rb_half *__restrict__ q, int ldq,\n"
      "    const rb_half *__restrict__ kcache, const rb_half *__restrict__ vcache,\n"
      "    const int *__restrict__ pos0p, int T, float *__restrict__ ws) {\n"
"  rb_grid_enter();\n"
      "  const int ngrid = gridDim.x / H;  /* splits launched: enough for a full cache */\n"
      "  const int h = blockIdx.x %% H, split = blockIdx.x / H, t = blockIdx.y;\n"
      "  if (t >= T || (ngrid > 1 && T > NSMALL)) return;\n"
      "  const int pos0 = *pos0p;\n"
      "  const int nkeys = min(pos0 + t + 1, CTX);\n"
      "  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;\n"
      "  const int nwarps = blockDim.x >> 5;\n"
      "  /* Splits this row takes: each gets at least two block-wide steps of keys, since a\n"
      "   * short context spread over every launched split pays the merge's round trip for a\n"
      "   * few keys a block. The extra blocks leave at once; their states are never read. */\n"
      "  const int step_keys = nwarps * KPW * U;\n"
      "  const int nsplit = max(1, min(ngrid, (nkeys + 2 * step_keys - 1) / (2 * step_keys)));\n"
      "  if (split >= nsplit) return;\n"
      "  /* This block's keys: split of nsplit near-equal ranges. */\n"
      "  const int chunk = (nkeys + nsplit - 1) / nsplit;\n"
      "  const int kbeg = min(split * chunk, nkeys), kend = min(kbeg + chunk, nkeys);\n"
      "  const int grp = lane / G, gl = lane %% G;  /* key slot in the warp, lane in the group */\n"
      "  const rb_half *kb = kcache + (long long)(h / GROUP) * CTX * HD;\n"
      "  const rb_half *vb = vcache + (long long)(h / GROUP) * CTX * HD;\n"
      "\n"
      "  /* This lane's dims of q, pre-scaled so that q.k is the score in log2 units. */\n"
      "  float qf[CPL][8];\n"
      "  const rb_half *qr = q + (long long)t * ldq + h * HD;\n"
      "#pragma unroll\n"
      "  for (int c = 0; c < CPL; c++) {\n"
      "    const int ch = gl + c * G;\n"
      "#pragma unroll\n"
      "    for (int e = 0; e < 8; e++) qf[c][e] = ch < NCHUNK ? rb_h2f(qr[ch * 8 + e]) * SCALE_LOG2 : 0.0f;\n"
      "  }\n"
      "\n"
      "  /* Online softmax state of this lane group: max m, sum l, unnormalized output acc. */\n"
      "  float m = NEG_BIG, l = 0.0f;\n"
      "  float acc[CPL][8];\n"
      "#pragma unroll\n"
      "  for (int c = 0; c < CPL; c++)\n"
      "#pragma unroll\n"
      "    for (int e = 0; e < 8; e++) acc[c][e] = 0.0f;\n"
      "\n"
      "  /* Warp w takes KPW*U consecutive keys per step; group grp the U keys at\n"
      "   * jw + grp*U. The trip count is uniform over the warp, as the shuffles need. */\n"
      "  for (int jw = kbeg + warp * KPW * U; jw < kend; jw += nwarps * KPW * U) {\n"
      "    const int j0 = jw + grp * U;\n"
      "    rb_chunk kc[U][CPL], vc[U][CPL];\n"
      "#pragma unroll\n"
      "    for (int u = 0; u < U; u++)\n"
      "#pragma unroll\n"
      "      for (int c = 0; c < CPL; c++) {\n"
      "        const int ch = gl + c * G;\n"
      "        if (j0 + u < kend && ch < NCHUNK) {\n"
      "          kc[u][c] = *(const rb_chunk *)(kb + (long long)(j0 + u) * HD + ch * 8);\n"
      "          vc[u][c] = *(const rb_chunk *)(vb + (long long)(j0 + u) * HD + ch * 8);\n"
      "        } else {\n"
      "          kc[u][c] = rb_chunk{{0u, 0u, 0u, 0u}};\n"
      "          vc[u][c] = rb_chunk{{0u, 0u, 0u, 0u}};\n"
      "        }\n"
      "      }\n"
      "\n"
      "    /* Scores: partial dots reduced over the G lanes of the group. */\n"
      "    float sc[U];\n"
      "    float mnew = m;\n"
      "#pragma unroll\n"
      "    for (int u = 0; u < U; u++) {\n"
      "      float dot = 0.0f;\n"
      "#pragma unroll\n"
      "      for (int c = 0; c < CPL; c++) {\n"
      "        float kf[8];\n"
      "        rb_unpack8(kc[u][c], kf);\n"
      "#pragma unroll\n"
      "        for (int e = 0; e < 8; e++) dot += qf[c][e] * kf[e];\n"
      "      }\n"
      "#pragma unroll\n"
      "      for (int o = G / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);\n"
      "      sc[u] = j0 + u < kend ? dot : NEG_BIG;\n"
      "      mnew = fmaxf(mnew, sc[u]);\n"
      "    }\n"
      "\n"
      "    /* Rescale the state to the new max, then add the U keys. */\n"
      "    const float corr = exp2f(m - mnew);\n"
      "    m = mnew;\n"
      "    l *= corr;\n"
      "#pragma unroll\n"
      "    for (int c = 0; c < CPL; c++)\n"
      "#pragma unroll\n"
      "      for (int e = 0; e < 8; e++) acc[c][e] *= corr;\n"
      "#pragma unroll\n"
      "    for (int u = 0; u < U; u++) {\n"
      "      const float p = j0 + u < kend ? exp2f(sc[u] - m) : 0.0f;\n"
      "      l += p;\n"
      "#pragma unroll\n"
      "      for (int c = 0; c < CPL; c++) {\n"
      "        float vf[8];\n"
      "        rb_unpack8(vc[u][c], vf);\n"
      "#pragma unroll\n"
      "        for (int e = 0; e < 8; e++) acc[c][e] += p * vf[e];\n"
      "      }\n"
      "    }\n"
      "  }\n"
      "\n"
      "  /* Merge the KPW groups of the warp (lanes gl, gl+G, ... hold the same dims). */\n"
      "#pragma unroll\n"
      "  for (int o = G; o < 32; o <<= 1) {\n"
      "    const float mo = __shfl_xor_sync(0xffffffffu, m, o);\n"
      "    const float lo = __shfl_xor_sync(0xffffffffu, l, o);\n"
      "    const float mn = fmaxf(m, mo);\n"
      "    const float a = exp2f(m - mn), bo = exp2f(mo - mn);\n"
      "    l = l * a + lo * bo;\n"
      "#pragma unroll\n"
      "    for (int c = 0; c < CPL; c++)\n"
      "#pragma unroll\n"
      "      for (int e = 0; e < 8; e++)\n"
      "        acc[c][e] = acc[c][e] * a + __shfl_xor_sync(0xffffffffu, acc[c][e], o) * bo;\n"
      "    m = mn;\n"
      "  }\n"
      "\n"
      "  /* Merge the warps through shared memory, in warp order. */\n"
      "  __shared__ float sm_m[MAXW], sm_l[MAXW];\n"
      "  __shared__ float sm_o[MAXW][HD];\n"
      "  if (lane < G) {\n"
      "    if (lane == 0) {\n"
      "      sm_m[warp] = m;\n"
      "      sm_l[warp] = l;\n"
      "    }\n"
      "#pragma unroll\n"
      "    for (int c = 0; c < CPL; c++) {\n"
      "      const int ch = gl + c * G;\n"
      "      if (ch < NCHUNK)\n"
      "#pragma unroll\n"
      "        for (int e = 0; e < 8; e++) sm_o[warp][ch * 8 + e] = acc[c][e];\n"
      "    }\n"
      "  }\n"
      "  __syncthreads();\n"
      "  float mmax = NEG_BIG;\n"
      "  for (int w = 0; w < nwarps; w++) mmax = fmaxf(mmax, sm_m[w]);\n"
      "  float lsum = 0.0f;\n"
      "  for (int w = 0; w < nwarps; w++) lsum += sm_l[w] * exp2f(sm_m[w] - mmax);\n"
      "  rb_half *orow = out + (long long)t * (H * HD) + h * HD;\n"
      "  if (nsplit == 1) {\n"
      "    const float inv = 1.0f / lsum;  /* lsum >= 1: the max key contributes exp2(0) */\n"
      "    for (int d = threadIdx.x; d < HD; d += blockDim.x) {\n"
      "      float o = 0.0f;\n"
      "      for (int w = 0; w < nwarps; w++) o += sm_o[w][d] * exp2f(sm_m[w] - mmax);\n"
      "      orow[d] = rb_f2h(o * inv);\n"
      "    }\n"
      "    return;\n"
      "  }\n"
      "\n"
      "  /* A split: its state to the workspace (an empty split's is m = NEG_BIG, l = 0). */\n"
      "  unsigned int *count = (unsigned int *)ws + t * H + h;\n"
      "  float *states = ws + NSMALL * H + (long long)(t * H + h) * ngrid * (2 + HD);\n"
      "  float *mine = states + split * (2 + HD);\n"
      "  for (int d = threadIdx.x; d < HD; d += blockDim.x) {\n"
      "    float o = 0.0f;\n"
      "    for (int w = 0; w < nwarps; w++) o += sm_o[w][d] * exp2f(sm_m[w] - mmax);\n"
      "    mine[2 + d] = o;\n"
      "  }\n"
      "  if (threadIdx.x == 0) mine[0] = mmax, mine[1] = lsum;\n"
      "  __threadfence();  /* the state is visible before the arrival is counted */\n"
      "  __syncthreads();\n"
      "  __shared__ int last;\n"
      "  if (threadIdx.x == 0) last = atomicAdd(count, 1u) == (unsigned int)nsplit - 1u;\n"
      "  __syncthreads();\n"
      "  if (!last) return;\n"
      "\n"
      "  /* The last split to arrive merges all of them, in split order, reading past L1. */\n"
      "  __threadfence();\n"
      "  __shared__ float sm_w[MAXSPLIT];\n"
      "  if (threadIdx.x == 0) {\n"
      "    float M = NEG_BIG, L = 0.0f;\n"
      "    for (int s = 0; s < nsplit; s++) M = fmaxf(M, __ldcg(states + s * (2 + HD)));\n"
      "    for (int s = 0; s < nsplit; s++) {\n"
      "      sm_w[s] = exp2f(__ldcg(states + s * (2 + HD)) - M);\n"
      "      L += __ldcg(states + s * (2 + HD) + 1) * sm_w[s];\n"
      "    }\n"
      "    const float inv = 1.0f / L;  /* L >= 1: the split holding the top score gives >= 1 */\n"
      "    for (int s = 0; s < nsplit; s++) sm_w[s] *= inv;\n"
      "    *count = 0u;  /* ready for the next launch: a replayed graph included */\n"
      "  }\n"
      "  __syncthreads();\n"
      "  for (int d = threadIdx.x; d < HD; d += blockDim.x) {\n"
      "    float o = 0.0f;\n"
      "    for (int s = 0; s < nsplit; s++) o += __ldcg(states + s * (2 + HD) + 2 + d) * sm_w[s];\n"
      "    orow[d] = rb_f2h(o);\n"
      "  }\n"
      "}\n",
      entry);
}

/* ==== swiglu, add ==== */

#define EW_THREADS 256
#define ADD_PER 4 /* elements per thread */

static void emit_swiglu(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  cg_cuda_prelude(b, k, "codegen/cuda/ops.c");
  rb_buf_printf(b,
                "#define D %d  /* output width; gu rows hold gate then up */\n"
                "\n"
                "/* y (T, D) = silu(gu[:, :D]) * gu[:, D:2D], gu (T, ld); grid (ceil(D / %d), T). */\n"
                "extern \"C\" __global__ void __launch_bounds__(%d)\n"
                "%s(rb_half *__restrict__ y, const rb_half *__restrict__ gu, int ld, int T) {\n"
"  rb_grid_enter();\n"
                "  const int i = blockIdx.x * %d + threadIdx.x;\n"
                "  const int t = blockIdx.y;\n"
                "  if (i >= D || t >= T) return;\n"
                "  const rb_half *row = gu + (long long)t * ld;\n"
                "  const float g = rb_h2f(row[i]), u = rb_h2f(row[D + i]);\n"
                "  /* silu(g) = g / (1 + e^-g); for very negative g, expf overflows to inf and\n"
                "   * the quotient goes to -0, the right limit. */\n"
                "  y[(long long)t * D + i] = rb_f2h(g / (1.0f + expf(-g)) * u);\n"
                "}\n",
                s->dim, EW_THREADS, EW_THREADS, entry, EW_THREADS);
}

static void emit_add(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  cg_cuda_prelude(b, k, "codegen/cuda/ops.c");
  rb_buf_printf(b,
                "#define THREADS %d\n"
                "#define PER %d  /* elements per thread, strided by THREADS so warps stay coalesced */\n"
                "\n"
                "/* y = a + b over n elements (the residual add; D = %d is the row width it\n"
                " * serves). y may alias a or b. grid (ceil(n / (THREADS * PER))). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(rb_half *y, const rb_half *a, const rb_half *b, int n) {\n"
"  rb_grid_enter();\n"
                "  const long long base = (long long)blockIdx.x * (THREADS * PER) + threadIdx.x;\n"
                "#pragma unroll\n"
                "  for (int k = 0; k < PER; k++) {\n"
                "    const long long i = base + k * THREADS;\n"
                "    if (i < n) y[i] = rb_f2h(rb_h2f(a[i]) + rb_h2f(b[i]));\n"
                "  }\n"
                "}\n",
                EW_THREADS, ADD_PER, s->dim, entry);
}

/* ==== nll ==== */

/* Threads for a row of V logits: about 16 each, whole warps, 32..1024. */
static int nll_threads(int V) {
  int t = round_up((V + 15) / 16, 32);
  return t > 1024 ? 1024 : t;
}

/* One block per row, two passes over it (max, then the sum of exponentials):
 * a row of 49152 f32 is 192 KiB, read twice from L2, a few microseconds for a
 * 512-row chunk against milliseconds of forward. Each thread walks its
 * strided elements in order and the block reduces in a fixed tree, so the
 * same logits give the same bits on every run. */
static void emit_nll(const CgKernel *k, RbBuf *b, const char *entry) {
  const CgOp *s = &k->op;
  cg_cuda_prelude(b, k, "codegen/cuda/ops.c");
  rb_buf_printf(b,
                "#define V %d  /* vocabulary: logits per row */\n"
                "#define THREADS %d\n"
                "#define NWARP (THREADS / 32)\n"
                "\n"
                "/* The block's sum (max when is_max) of v, in a fixed order: warps by shuffle,\n"
                " * then the warp partials in warp order, by every thread alike. */\n"
                "__device__ __forceinline__ float rb_block_reduce(float v, bool is_max, float *part) {\n"
                "#pragma unroll\n"
                "  for (int o = 16; o > 0; o >>= 1) {\n"
                "    const float w = __shfl_xor_sync(0xffffffffu, v, o);\n"
                "    v = is_max ? fmaxf(v, w) : v + w;\n"
                "  }\n"
                "  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;\n"
                "  __syncthreads();\n"
                "  v = part[0];\n"
                "#pragma unroll\n"
                "  for (int i = 1; i < NWARP; i++) v = is_max ? fmaxf(v, part[i]) : v + part[i];\n"
                "  __syncthreads();  /* part is reused by the next reduction */\n"
                "  return v;\n"
                "}\n"
                "\n"
                "/* nll[t] = log(sum_v exp(logits[t, v])) - logits[t, targets[t]] (a row's\n"
                " * negative log-likelihood of its target), logits f32 (T, ld); NaN for a target\n"
                " * outside the vocabulary, so a bad id cannot pass for a good loss.\n"
                " * grid (T), block (THREADS). */\n"
                "extern \"C\" __global__ void __launch_bounds__(THREADS)\n"
                "%s(float *__restrict__ nll, const float *__restrict__ logits,\n"
                "    const int *__restrict__ targets, int ld, int T) {\n"
"  rb_grid_enter();\n"
                "  const int t = blockIdx.x;\n"
                "  if (t >= T) return;\n"
                "  const float *row = logits + (long long)t * ld;\n"
                "  __shared__ float part[NWARP];\n"
                "\n"
                "  float m = -3.402823466e38f;\n"
                "  for (int i = threadIdx.x; i < V; i += THREADS) m = fmaxf(m, row[i]);\n"
                "  m = rb_block_reduce(m, true, part);\n"
                "\n"
                "  float sum = 0.0f;\n"
                "  for (int i = threadIdx.x; i < V; i += THREADS) sum += expf(row[i] - m);\n"
                "  sum = rb_block_reduce(sum, false, part);  /* >= 1: the max contributes exp(0) */\n"
                "\n"
                "  if (threadIdx.x == 0) {\n"
                "    const int tg = targets[t];\n"
                "    nll[t] = tg >= 0 && tg < V ? logf(sum) + m - row[tg] : __int_as_float(0x7fc00000);\n"
                "  }\n"
                "}\n",
                s->vocab, nll_threads(s->vocab), entry);
}

/* ==== entry points ==== */

/* The entry name: the kind and the integer dims the kernel is specialized on.
 * The float attributes in a kernel's description (rmsnorm eps; rope theta, which
 * rope_kv and attention carry) are not in it, so those kernels get the hash
 * suffix of cg_cuda_entry: two that differ only there get two names. */
static void op_entry(const CgKernel *k, char entry[CG_ENTRY_MAX]) {
  const CgOp *s = &k->op;
  char name[160];
  int hashed = 0;
  switch (s->kind) {
  case CG_EMBED: snprintf(name, sizeof name, "rb_embed_v%d_d%d", s->vocab, s->dim); break;
  case CG_RMSNORM: snprintf(name, sizeof name, "rb_rmsnorm_d%d", s->dim), hashed = 1; break;
  case CG_ROPE_KV:
    snprintf(name, sizeof name, "rb_rope_kv_h%d_kv%d_hd%d_c%d", s->heads, s->kv_heads, s->head_dim,
             s->max_ctx);
    hashed = 1;
    break;
  case CG_ATTENTION:
    snprintf(name, sizeof name, "rb_attention_h%d_kv%d_hd%d_c%d", s->heads, s->kv_heads, s->head_dim,
             s->max_ctx);
    hashed = 1;
    break;
  case CG_SWIGLU: snprintf(name, sizeof name, "rb_swiglu_d%d", s->dim); break;
  case CG_ADD: snprintf(name, sizeof name, "rb_add_d%d", s->dim); break;
  case CG_NLL: snprintf(name, sizeof name, "rb_nll_v%d", s->vocab); break;
  default: snprintf(name, sizeof name, "rb_unknown"); break;
  }
  cg_cuda_entry(k, name, hashed, entry);
}

/* Emit the canonical source of an op kernel (embed, rmsnorm, rope_kv, attention,
 * swiglu, add, nll) into src and its entry name into entry. RB_EUSER with a message
 * in err for dims the kernels cannot take; RB_EINTERNAL if src ran out of memory.
 * The ops have one schedule each: k->sched is unused. */
int cg_emit_op(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  const CgOp *s = &k->op;
  int rc = op_check(s, err);
  if (rc) return rc;
  op_entry(k, entry);
  switch (s->kind) {
  case CG_EMBED: emit_embed(k, src, entry); break;
  case CG_RMSNORM: emit_rmsnorm(k, src, entry); break;
  case CG_ROPE_KV: emit_rope_kv(k, src, entry); break;
  case CG_ATTENTION: emit_attention(k, src, entry); break;
  case CG_SWIGLU: emit_swiglu(k, src, entry); break;
  case CG_ADD: emit_add(k, src, entry); break;
  case CG_NLL: emit_nll(k, src, entry); break;
  default: return RB_EUSER; /* op_check rejected it already */
  }
  if (src->oom) {
    rb_buf_printf(err, "cg_emit_op: out of memory emitting %s", entry);
    return RB_EINTERNAL;
  }
  return RB_OK;
}

/* Launch geometry of an op kernel: n is T rows (the element count for CG_ADD). */
int cg_geometry_op(const CgKernel *k, CgGeometry *g, RbBuf *err) {
  const CgOp *s = &k->op;
  memset(g, 0, sizeof *g);
  int rc = op_check(s, err);
  if (rc) return rc;
  g->grid[0] = g->grid[1] = g->grid[2] = 1;
  g->block[0] = g->block[1] = g->block[2] = 1;
  g->n_per_block = 1;
  switch (s->kind) {
  case CG_EMBED:
    g->grid[0] = (unsigned)((s->dim + EMBED_THREADS - 1) / EMBED_THREADS);
    g->grow_axis = 1;
    g->block[0] = EMBED_THREADS;
    break;
  case CG_RMSNORM:
    g->grow_axis = 0;
    g->block[0] = (unsigned)rmsnorm_threads(s->dim);
    break;
  case CG_ROPE_KV: {
    int half = s->head_dim / 2;
    g->grow_axis = 0;
    g->grid[1] = (unsigned)(s->heads + s->kv_heads);
    g->block[0] = (unsigned)(half < 256 ? half : 256);
    break;
  }
  case CG_ATTENTION: {
    /* Decode (few rows) would have only H blocks: the context is split over
     * att_splits blocks each, with warps enough for a split of a full cache.
     * Prefill has T*H blocks, so fewer warps each and no split. */
    int splits = att_splits(k), per_warp = att_keys_per_warp(s);
    int warps = (s->max_ctx / splits + per_warp - 1) / per_warp;
    g->grid[0] = (unsigned)s->heads;
    g->grow_axis = 1;
    g->block[0] = 32u * ATT_PREFILL_W;
    g->n_small = ATT_SMALL;
    g->block_x_small = 32u * (unsigned)(warps < 1 ? 1 : warps > ATT_MAXW ? ATT_MAXW : warps);
    g->grid_x_small = (unsigned)(s->heads * splits);
    break;
  }
  case CG_SWIGLU:
    g->grid[0] = (unsigned)((s->dim + EW_THREADS - 1) / EW_THREADS);
    g->grow_axis = 1;
    g->block[0] = EW_THREADS;
    break;
  case CG_ADD:
    g->grow_axis = 0;
    g->n_per_block = EW_THREADS * ADD_PER;
    g->block[0] = EW_THREADS;
    break;
  case CG_NLL:
    g->grow_axis = 0;
    g->block[0] = (unsigned)nll_threads(s->vocab);
    break;
  default: return RB_EUSER;
  }
  return RB_OK;
}

/* ==== argument marshalling: the ABI of codegen.h, in the order the kernels declare ==== */

void cg_embed_argv(CgEmbedArgs *a, CgArgv *o) { CG_ARGV(o, &a->y, &a->tokens, &a->table, &a->T); }
void cg_rmsnorm_argv(CgRmsnormArgs *a, CgArgv *o) { CG_ARGV(o, &a->y, &a->x, &a->w, &a->T); }
void cg_rope_kv_argv(CgRopeKvArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->q, &a->ldq, &a->k, &a->ldk, &a->v, &a->ldv, &a->kcache, &a->vcache, &a->pos0, &a->T);
}
void cg_attention_argv(CgAttentionArgs *a, CgArgv *o) {
  CG_ARGV(o, &a->out, &a->q, &a->ldq, &a->kcache, &a->vcache, &a->pos0, &a->T, &a->ws);
}

size_t cg_attention_ws_bytes(const CgOp *op, const CgGeometry *g) {
  size_t splits = g->grid[0] ? g->grid_x_small / g->grid[0] : 0;
  if (op->kind != CG_ATTENTION || splits <= 1) return 0;
  return (size_t)g->n_small * op->heads * (4 + splits * (2 + (size_t)op->head_dim) * 4);
}
void cg_swiglu_argv(CgSwigluArgs *a, CgArgv *o) { CG_ARGV(o, &a->y, &a->gu, &a->ld, &a->T); }
void cg_add_argv(CgAddArgs *a, CgArgv *o) { CG_ARGV(o, &a->y, &a->a, &a->b, &a->n); }
void cg_nll_argv(CgNllArgs *a, CgArgv *o) { CG_ARGV(o, &a->nll, &a->logits, &a->targets, &a->ld, &a->T); }
