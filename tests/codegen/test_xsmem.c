/* test_xsmem.c: the xsmem strategy on the CPU, from what its comments state and not from
 * the emitted source. (1) Its sums: each lane's decoded A fragment (register q of k16 step s
 * takes bits 4s+q and 4s+q+16 of its layout word to the fp16 signs of +-g) and its B fragment
 * (the staged halves 64j + 16tig + 4s .. + 3 of x .* h_p), placed by the m16n8k16 fragment
 * layout of the PTX ISA and multiplied, must equal the float64 sum over the signs on fresh
 * random inputs. (2) Its stage pitch: the 16-byte fragment reads of each 8-lane phase touch
 * distinct banks. (3) The planner's refusals and its shared memory. No GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"
#include "tests/common/check.h"
#include "tests/common/layout.h"
#include "tests/common/rng.h"

enum { XPITCH = 264 }; /* xsmem.c's x row pitch, in halves */

/* One tile of 16 rows, all groups, two n8 batch tiles, as the kernel's warps sum it. */
static int run_case(int N, int K, int paths, int batch, uint64_t seed) {
  test_rng = seed | 1;
  const int C256 = (K + 255) / 256, tiles = (N + 15) / 16;
  uint8_t *b = malloc((size_t)paths * N * K);
  float *x = malloc((size_t)batch * K * sizeof *x), *h = malloc((size_t)paths * K * sizeof *h);
  float *g = malloc((size_t)paths * N * sizeof *g);
  double *y = calloc((size_t)N * batch, sizeof *y), *yr = calloc((size_t)N * batch, sizeof *yr);
  for (size_t i = 0; i < (size_t)paths * N * K; i++) b[i] = rnd() & 1;
  for (int i = 0; i < batch * K; i++) x[i] = (float)(unif() - 0.5);
  for (int i = 0; i < paths * K; i++) h[i] = (float)(0.5 + unif());
  for (int i = 0; i < paths * N; i++) g[i] = (float)(0.5 + unif());
  for (int T = 0; T < tiles; T++)
    for (int p = 0; p < paths; p++)
      for (int c = 0; c < C256; c++)
        for (int j = 0; j < 4; j++)
          for (int s = 0; s < 4; s++)
            for (int nb = 0; nb * 8 < batch; nb++) {
              /* The fragments of every lane, placed as mma.m16n8k16 reads them. */
              double A[16][16], B[16][8];
              for (int lane = 0; lane < 32; lane++) {
                const int gid = lane >> 2, tig = lane & 3;
                const unsigned w = layout_word(b, N, K, p, T, c, lane, j);
                for (int q = 0; q < 4; q++)
                  for (int e = 0; e < 2; e++) { /* half e of register q: row gid + 8 (q & 1), k 2 tig + 8 (q >> 1) + e */
                    const int n = T * 16 + gid + 8 * (q & 1);
                    const double gv = n < N ? g[(size_t)p * N + n] : 0.0;
                    const unsigned sign = (w << (15 - (4 * s + q))) >> (15 + 16 * e) & 1u;
                    A[gid + 8 * (q & 1)][2 * tig + 8 * (q >> 1) + e] = sign ? -gv : gv;
                  }
                for (int r = 0; r < 2; r++) /* b_r = the lane's pair 2 s + r: k 2 tig + 8 r + e */
                  for (int e = 0; e < 2; e++) {
                    const int col = c * 256 + j * 64 + tig * 16 + 4 * s + 2 * r + e, brow = nb * 8 + gid;
                    B[2 * tig + 8 * r + e][gid] =
                        col < K && brow < batch ? (double)x[(size_t)brow * K + col] * h[(size_t)p * K + col] : 0.0;
                  }
              }
              for (int i = 0; i < 16; i++)
                for (int bc = 0; bc < 8; bc++) {
                  double d = 0;
                  for (int k = 0; k < 16; k++) d += A[i][k] * B[k][bc];
                  const int n = T * 16 + i, brow = nb * 8 + bc;
                  if (n < N && brow < batch) y[(size_t)n * batch + brow] += d;
                }
            }
  for (int n = 0; n < N; n++)
    for (int bb = 0; bb < batch; bb++)
      for (int p = 0; p < paths; p++)
        for (int k = 0; k < K; k++)
          yr[(size_t)n * batch + bb] += (double)g[(size_t)p * N + n] * (sign_bit(b, N, K, p, n, k) ? -1.0 : 1.0) *
                                        (double)x[(size_t)bb * K + k] * (double)h[(size_t)p * K + k];
  double e = 0, nr = 0;
  for (size_t i = 0; i < (size_t)N * batch; i++) e += (y[i] - yr[i]) * (y[i] - yr[i]), nr += yr[i] * yr[i];
  e = sqrt(e / nr);
  CHECK(e < 1e-12, "%dx%d k=%d batch %d: the fragments' sum is %.3g (relative) from the reference", N, K, paths,
        batch, e);
  printf("%s %dx%d k=%d batch %d: %.2e from the reference\n", e < 1e-12 ? "ok  " : "FAIL", N, K, paths, batch, e);
  free(b), free(x), free(h), free(g), free(y), free(yr);
  return !(e < 1e-12);
}

/* The 8 lanes of each phase of a 16-byte shared load (lanes 8i .. 8i + 7: two rows gid by four
 * tig) read x row gid at halves 64 j + 16 tig (+ 8): their 4-byte banks must be distinct. */
static int pitch_conflict_free(void) {
  for (int phase = 0; phase < 4; phase++)
    for (int half = 0; half < 2; half++) {
      unsigned used = 0;
      for (int l = 8 * phase; l < 8 * phase + 8; l++) {
        const int gid = l >> 2, tig = l & 3, byte = (gid * XPITCH + 16 * tig + 8 * half) * 2;
        for (int w = 0; w < 4; w++) {
          const unsigned bank = 1u << ((byte / 4 + w) % 32);
          if (used & bank) return 0;
          used |= bank;
        }
      }
    }
  return 1;
}

int main(void) {
  int bad = 0;
  uint64_t seed = (uint64_t)time(NULL); /* fresh inputs each run, the seed printed to replay */
  printf("seed %llu\n", (unsigned long long)seed);
  bad += run_case(37, 300, 1, 16, seed + 1); /* partial tiles, a partial group, K % 8 != 0 */
  bad += run_case(16, 512, 2, 13, seed + 2);
  bad += run_case(40, 256, 3, 5, seed + 3);
  CHECK(pitch_conflict_free(), "the x pitch of %d halves leaves a bank conflict", XPITCH);

  CgKernel k;
  memset(&k, 0, sizeof k);
  k.op.kind = CG_LINEAR, k.op.K = 4096, k.op.paths = 2, k.op.nseg = 2, k.op.N[0] = k.op.N[1] = 11008;
  k.op.epilogue = CG_EPI_SWIGLU;
  k.sched.strategy = CG_STRAT_XSMEM, k.sched.batch_max = 16;
  CgGeometry geo;
  RbBuf err = {0};
  CHECK(cg_target_cuda.geometry(&k, &geo, &err) == RB_OK, "the default xsmem gate/up: %s", err.data ? err.data : "");
  /* Defaults RT 2, KS 2, WR 4, BT 16: two stages of two groups of 16 x rows and 4 h rows. */
  CHECK(geo.block[0] * geo.block[1] * geo.block[2] == 256 && geo.smem == 2u * 2 * (16 * XPITCH + 4 * 256) * 2,
        "default block %u threads, %u bytes", geo.block[0] * geo.block[1] * geo.block[2], geo.smem);
  CHECK(geo.grid[0] == (11008 / 16 + 7) / 8, "a block covers WR x RT = 8 row tiles of both segments: %u blocks",
        geo.grid[0]);
  rb_buf_free(&err);
  CgKernel m = k;
  m.sched.tile[0] = 9;
  bad += refused(m, "bad tile", "xsmem with 9 row tiles a warp");
  m = k, m.sched.tile[1] = 8, m.sched.tile[2] = 8;
  bad += refused(m, "at most 32 warps", "xsmem with 64 warps");
  m = k, m.sched.tile[3] = 12;
  bad += refused(m, "bad tile", "xsmem with a batch tile of 12");
  m = k, m.sched.tile[1] = 32, m.sched.tile[2] = 1, m.op.paths = 4;
  bad += refused(m, "bytes of shared memory", "xsmem staging 32 groups of 4 paths");
  return CHECK_SUMMARY() || bad;
}
