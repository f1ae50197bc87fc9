// probe_mma.cu: the tensor pipe's rate for the mma.sync shapes a binary GEMV could use, on this
// GPU: m16n8k16 f16 (what the register kernels run), m16n8k32 s8 and m16n8k256 b1 (and.popc,
// which would take the sign bits as they lie in memory). Each warp runs 8 independent chains so
// that the pipe, not the latency, bounds it. Built and run on the device machine:
//   nvcc -arch=sm_90a -o probe_mma probe_mma.cu && ./probe_mma
// cuobjdump -sass says whether the b1 shape is one native instruction or an emulation. Then one
// b1 mma on random bits against the fragment layout a binary GEMV would rely on (checked on the
// host): lane (g, t) = (lane / 4, lane % 4) holds A row g in a0 and row g + 8 in a1 for k = 32 t + i
// (bit i), a2 and a3 the same rows for k = 128 + 32 t + i; B column g for those k in b0 and b1;
// D rows g and g + 8, columns 2 t and 2 t + 1.
#include <cstdio>
#include <cuda_runtime.h>

enum { ITERS = 4096, CHAINS = 8, WARPS = 8 };

// One mma.sync per shape, C += A B on registers; Acc is the accumulator's type.
struct F16 { typedef float Acc; };
struct S8 { typedef int Acc; };
struct B1 { typedef int Acc; };
__device__ __forceinline__ void mma(F16, float *c, const unsigned *a, const unsigned *b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma(S8, int *c, const unsigned *a, const unsigned *b) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma(B1, int *c, const unsigned *a, const unsigned *b) {
  asm volatile("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <class Shape>
__global__ void chains(float *out, unsigned seed) {
  unsigned a[4] = {seed, seed * 3, seed * 5, seed * 7}, b[2] = {seed * 11, seed * 13};
  typename Shape::Acc c[CHAINS][4] = {};
  for (int i = 0; i < ITERS; ++i)
#pragma unroll
    for (int j = 0; j < CHAINS; ++j) mma(Shape(), c[j], a, b);
  typename Shape::Acc s = 0;
  for (int j = 0; j < CHAINS; ++j) s += c[j][0] + c[j][1] + c[j][2] + c[j][3];
  out[blockIdx.x * blockDim.x + threadIdx.x] = (float)s;
}

__global__ void bmma_once(int *d, const unsigned *a, const unsigned *b) {
  const int l = threadIdx.x;
  int c[4] = {0, 0, 0, 0};
  mma(B1(), c, a + 4 * l, b + 2 * l);
  for (int e = 0; e < 4; ++e) d[4 * l + e] = c[e];
}

/* The layout above, on the host: bit k of A row r and of B column n, from the lanes' words. */
static int abit(const unsigned *a, int r, int k) {
  const int g = r % 8, t = k % 128 / 32, reg = (r >= 8) + 2 * (k >= 128);
  return a[4 * (4 * g + t) + reg] >> (k % 32) & 1;
}
static int bbit(const unsigned *b, int n, int k) { return b[2 * (4 * n + k % 128 / 32) + (k >= 128)] >> (k % 32) & 1; }

static int check_layout(void) {
  unsigned ha[128], hb[64], x = 12345;
  for (int i = 0; i < 128; ++i) ha[i] = x = x * 1664525u + 1013904223u;
  for (int i = 0; i < 64; ++i) hb[i] = x = x * 1664525u + 1013904223u;
  unsigned *da, *db;
  int *dd, hd[128];
  cudaMalloc(&da, sizeof ha), cudaMalloc(&db, sizeof hb), cudaMalloc(&dd, sizeof hd);
  cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice), cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice);
  bmma_once<<<1, 32>>>(dd, da, db);
  cudaMemcpy(hd, dd, sizeof hd, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int l = 0; l < 32; ++l)
    for (int e = 0; e < 4; ++e) {
      const int r = l / 4 + 8 * (e >> 1), n = 2 * (l % 4) + (e & 1);
      int want = 0;
      for (int k = 0; k < 256; ++k) want += abit(ha, r, k) & bbit(hb, n, k);
      bad += hd[4 * l + e] != want;
    }
  printf("b1 fragment layout: %d of 128 outputs differ from the host's popc(A_r AND B_n)\n", bad);
  cudaFree(da), cudaFree(db), cudaFree(dd);
  return bad != 0;
}

typedef void (*Kernel)(float *, unsigned);

static void probe(const char *name, Kernel k, int kdim, int sms, float *out) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  const int blocks = sms * 4;
  k<<<blocks, WARPS * 32>>>(out, 1u); // warm-up
  cudaEventRecord(e0);
  k<<<blocks, WARPS * 32>>>(out, 3u);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms;
  cudaEventElapsedTime(&ms, e0, e1);
  const double mmas = (double)blocks * WARPS * ITERS * CHAINS;
  const double ops = mmas * 2.0 * 16 * 8 * kdim;
  int clk_khz;
  cudaDeviceGetAttribute(&clk_khz, cudaDevAttrClockRate, 0);
  const double cyc = ms * 1e-3 * clk_khz * 1e3;
  printf("%-28s %8.3f ms  %9.1f T ops/s  %6.2f cycles a warp mma on an SM sub-partition (at %d MHz)  %s\n", name, ms,
         ops / (ms * 1e-3) / 1e12, cyc / (mmas / (sms * 4.0)), clk_khz / 1000, cudaGetErrorString(cudaGetLastError()));
}

int main() {
  int sms;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  float *out;
  cudaMalloc(&out, sizeof(float) * sms * 4 * WARPS * 32);
  probe("m16n8k16 f16 -> f32", chains<F16>, 16, sms, out);
  probe("m16n8k32 s8 -> s32", chains<S8>, 32, sms, out);
  probe("m16n8k256 b1 and.popc", chains<B1>, 256, sms, out);
  return check_layout();
}
