// probe_wgmma.cu: the tensor pipe's rate for wgmma (sm_90a) with A in registers and B in shared
// memory, at the small N a batch-16 binary GEMV would use (the weights, decoded in registers, as A:
// 64 rows a warpgroup; the activations as B: N = the batch), beside mma.sync m16n8k16, whose
// ~7.7 cycles a warp instruction bound the batch-16 register kernels (KERNEL_NOTES 2026-12-04).
// Each warpgroup runs CHAINS independent accumulators, ROUNDS of them between waits, so the pipe,
// not the latency, bounds it. Built and run on the device machine:
//   nvcc -arch=sm_90a -o probe_wgmma probe_wgmma.cu && ./probe_wgmma
#include <cstdio>
#include <cuda_runtime.h>

enum { ITERS = 512, CHAINS = 4, ROUNDS = 8 };

// B: N x 16 f16, K-major, no swizzle: core matrices of 8 rows x 16 bytes, 128 bytes each;
// the two along K are LBO = 128 bytes apart, those along N SBO = 256 bytes apart.
__device__ __forceinline__ unsigned long long desc_b(const void *smem) {
  const unsigned addr = (unsigned)__cvta_generic_to_shared(smem);
  return (unsigned long long)((addr & 0x3FFFF) >> 4) | (unsigned long long)(128 >> 4) << 16 |
         (unsigned long long)(256 >> 4) << 32;
}

template <int N> struct Wg;
#define WG_OUT8 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
template <> struct Wg<8> {
  enum { ACC = 4 };
  static __device__ __forceinline__ void mma(float *d, const unsigned *a, unsigned long long b) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%0,%1,%2,%3}, {%4,%5,%6,%7}, %8, 1, 1, 1, 0;"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
  }
};
template <> struct Wg<16> {
  enum { ACC = 8 };
  static __device__ __forceinline__ void mma(float *d, const unsigned *a, unsigned long long b) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7}, "
                 "{%8,%9,%10,%11}, %12, 1, 1, 1, 0;"
                 : WG_OUT8
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
  }
};
template <> struct Wg<32> {
  enum { ACC = 16 };
  static __device__ __forceinline__ void mma(float *d, const unsigned *a, unsigned long long b) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, "
                 "{%16,%17,%18,%19}, %20, 1, 1, 1, 0;"
                 : WG_OUT8, "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
  }
};

template <int N>
__global__ void __launch_bounds__(256) wg_chains(float *out, unsigned seed) {
  __shared__ __align__(128) unsigned short b[32 * 16];
  for (int i = threadIdx.x; i < 32 * 16; i += blockDim.x) b[i] = 0x3C00 ^ (unsigned short)(i * seed & 0x8000);
  __syncthreads();
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  const unsigned long long desc = desc_b(b);
  // A: +-1 halves, varied by lane so nothing folds.
  unsigned a[4];
  for (int i = 0; i < 4; ++i) a[i] = 0x3C003C00u ^ ((threadIdx.x * (i + seed)) & 0x80008000u);
  float d[CHAINS][Wg<N>::ACC] = {};
  for (int it = 0; it < ITERS; ++it) {
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
    for (int r = 0; r < ROUNDS; ++r)
#pragma unroll
      for (int j = 0; j < CHAINS; ++j) Wg<N>::mma(d[j], a, desc);
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
  }
  float s = 0;
  for (int j = 0; j < CHAINS; ++j)
    for (int e = 0; e < Wg<N>::ACC; ++e) s += d[j][e];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

__global__ void __launch_bounds__(256) mma_chains(float *out, unsigned seed) {
  unsigned a[4] = {seed, seed * 3, seed * 5, seed * 7}, bb[2] = {seed * 11, seed * 13};
  for (int i = 0; i < 4; ++i) a[i] = 0x3C003C00u ^ (a[i] & 0x80008000u);
  for (int i = 0; i < 2; ++i) bb[i] = 0x3C003C00u ^ (bb[i] & 0x80008000u);
  float c[8][4] = {};
  for (int it = 0; it < ITERS * ROUNDS * CHAINS / 8; ++it)
#pragma unroll
    for (int j = 0; j < 8; ++j)
      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                   : "+f"(c[j][0]), "+f"(c[j][1]), "+f"(c[j][2]), "+f"(c[j][3])
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(bb[0]), "r"(bb[1]));
  float s = 0;
  for (int j = 0; j < 8; ++j) s += c[j][0] + c[j][1] + c[j][2] + c[j][3];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

typedef void (*Kernel)(float *, unsigned);

// flops_per_group: one warpgroup's (4 warps') work per instruction round of the kernel.
static void probe(const char *name, Kernel k, double flops_per_warp_instr, int warps_per_instr, int sms, float *out,
                  int blocks_per_sm) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  const int blocks = sms * blocks_per_sm, threads = 256;
  k<<<blocks, threads>>>(out, 1u);
  cudaEventRecord(e0);
  k<<<blocks, threads>>>(out, 3u);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms;
  cudaEventElapsedTime(&ms, e0, e1);
  const double instrs = (double)blocks * (threads / 32 / warps_per_instr) * ITERS * ROUNDS * CHAINS;
  const double flops = instrs * flops_per_warp_instr;
  int clk_khz;
  cudaDeviceGetAttribute(&clk_khz, cudaDevAttrClockRate, 0);
  printf("%-26s %2d blocks/SM %8.3f ms %7.1f TFLOP/s  %6.2f SM cycles per 16x16x16 f16 MACs block  %s\n", name,
         blocks_per_sm, ms, flops / (ms * 1e-3) / 1e12,
         ms * 1e-3 * clk_khz * 1e3 / (flops / (2.0 * 16 * 16 * 16) / sms), cudaGetErrorString(cudaGetLastError()));
}

int main() {
  int sms;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  float *out;
  cudaMalloc(&out, sizeof(float) * sms * 8 * 256);
  for (int bps = 1; bps <= 4; bps *= 2) {
    probe("mma.sync m16n8k16", mma_chains, 2.0 * 16 * 8 * 16, 1, sms, out, bps);
    probe("wgmma m64n8k16 (A regs)", wg_chains<8>, 2.0 * 64 * 8 * 16, 4, sms, out, bps);
    probe("wgmma m64n16k16 (A regs)", wg_chains<16>, 2.0 * 64 * 16 * 16, 4, sms, out, bps);
    probe("wgmma m64n32k16 (A regs)", wg_chains<32>, 2.0 * 64 * 32 * 16, 4, sms, out, bps);
  }
  return 0;
}
