/* test_lop3.c: the lop3 strategy's decode table (codegen/cuda/lop3.c) on the CPU.
 * For fresh random words, every A register (k16 step s, register q) built as the
 * emitted kernel builds it, (form(w) & mask) | C, must read as the fp16 values C + bit
 * for the two bits the layout gives it (4 s + q and 4 s + q + 16), C a power of two
 * that depends on q alone; F = -(C + 1/2) must be exact, so that the sums over a tile
 * of (A + F) u are exactly minus half the signed sums of u, a set bit being -1 as the
 * packed format has it (DESIGN.md: +1 -> 0, -1 -> 1), checked in double on random fp16 u. Then the emitted helpers carry the table's constants, and a lop3 kernel
 * uses them while an xor kernel of the same op does not. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/cuda/cuda.h"

static int failures;
#define CHECK(c, ...)                                                      \
  do {                                                                     \
    if (!(c)) {                                                            \
      failures++;                                                          \
      printf("FAIL %s:%d: ", __FILE__, __LINE__), printf(__VA_ARGS__), puts(""); \
    }                                                                      \
  } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) { /* xorshift64*, seeded from the clock below */
  rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
  return (uint32_t)((rng * 0x2545f4914f6cdd1dull) >> 32);
}

/* IEEE fp16 bits -> double, written out here rather than borrowed (an independent reading). */
static double half(unsigned h) {
  const int sign = h >> 15 & 1, e = h >> 10 & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return sign ? -v : v;
}

static void check_registers(void) {
  for (int s = 0; s < 4; s++)
    for (int q = 0; q < 4; q++) {
      CgLop3Reg r = cg_lop3_reg(s, q), r0 = cg_lop3_reg(0, q);
      CHECK(r.con == r0.con, "step %d register %d: C differs from step 0's", s, q);
      CHECK(__builtin_popcount(r.mask) == 2 && (r.mask >> 16) == (r.mask & 0xffffu), "mask %08x", r.mask);
      const int m = __builtin_ctz(r.mask);
      CHECK(m >= 6 && m <= 9, "step %d register %d: mantissa bit %d outside 6..9", s, q, m);
      const double c = half(r.con & 0xffffu);
      CHECK(c == ldexp(1, 10 - m) && (r.con >> 16) == (r.con & 0xffffu), "C %g for mantissa bit %d", c, m);
      CHECK(half(cg_lop3_fix(q) & 0xffffu) == -(c + 0.5) && cg_lop3_fix(q) >> 16 == (cg_lop3_fix(q) & 0xffffu),
            "F of register %d is %g, not %g", q, half(cg_lop3_fix(q) & 0xffffu), -(c + 0.5));
      for (int t = 0; t < 2000; t++) {
        const uint32_t w = t < 2 ? (t ? 0xffffffffu : 0u) : rnd();
        const unsigned a = (cg_lop3_form(r.form, w) & r.mask) | r.con;
        const int bit = 4 * s + q, lo = w >> bit & 1, hi = w >> (bit + 16) & 1;
        CHECK(half(a & 0xffffu) == c + lo && half(a >> 16) == c + hi,
              "w %08x step %d register %d: A reads %g, %g, not %g, %g", w, s, q, half(a & 0xffffu), half(a >> 16),
              c + lo, c + hi);
      }
    }
}

/* One 16-row x 16-column tile of k16 step s: sum over k of (A + F) u against -1/2 sum s u. */
static void check_tile_sums(void) {
  for (int t = 0; t < 200; t++) {
    const int s = t % 4;
    uint32_t w[8][4]; /* lane (gid, tig)'s word: rows gid and gid + 8 */
    for (int i = 0; i < 32; i++) w[i / 4][i % 4] = rnd();
    double u[16]; /* column k's activation, a random fp16 value */
    for (int k = 0; k < 16; k++) u[k] = half((rnd() & 0x3fffu) | (rnd() & 1) << 15); /* |u| < 2 */
    for (int row = 0; row < 16; row++) {
      const int gid = row & 7, rh = row >> 3;
      for (int tig = 0; tig < 4; tig++) {
        const uint32_t word = w[gid][tig];
        double with_a = 0, signed_sum = 0;
        for (int kp = 0; kp < 2; kp++) { /* register q = 2 kp + rh: columns 2 tig + 8 kp + {0, 1} */
          const int q = 2 * kp + rh;
          CgLop3Reg r = cg_lop3_reg(s, q);
          const unsigned a = (cg_lop3_form(r.form, word) & r.mask) | r.con, f = cg_lop3_fix(q);
          for (int h = 0; h < 2; h++) {
            const double uk = u[2 * tig + 8 * kp + h], av = half(h ? a >> 16 : a & 0xffffu);
            const double fv = half(h ? f >> 16 : f & 0xffffu);
            const int b = word >> (4 * s + q + 16 * h) & 1;
            with_a += (av + fv) * uk;
            signed_sum += (b ? -1.0 : 1.0) * uk; /* the packed format's sign of bit b */
          }
        }
        CHECK(with_a == -0.5 * signed_sum, "step %d row %d: %.17g != -%.17g / 2", s, row, with_a, signed_sum);
      }
    }
  }
}

static char *emit(CgStrategy st) {
  CgKernel k;
  memset(&k, 0, sizeof k);
  k.op.kind = CG_LINEAR;
  k.op.K = 4096, k.op.nseg = 1, k.op.N[0] = 4096, k.op.paths = 2;
  k.sched.strategy = st, k.sched.batch_max = 8;
  RbBuf src = {0}, err = {0};
  char entry[CG_ENTRY_MAX];
  int rc = cg_emit_linear(&k, &src, entry, &err);
  CHECK(rc == RB_OK, "emit %s: %s", cg_strategy_name(st), err.data ? err.data : "");
  CHECK(rc != RB_OK || strstr(entry, cg_strategy_name(st)), "entry %s does not name %s", entry, cg_strategy_name(st));
  rb_buf_free(&err);
  return src.data;
}

static void check_emitted(void) {
  RbBuf h = {0};
  cg_lop3_emit_helpers(&h);
  for (int s = 0; s < 4; s++)
    for (int q = 0; q < 4; q++) {
      char want[64];
      CgLop3Reg r = cg_lop3_reg(s, q);
      snprintf(want, sizeof want, "a[%d] = (v[%d] & 0x%08xu) | c[%d];", q, r.form, r.mask, q);
      CHECK(h.data && strstr(h.data, want), "the helpers lack \"%s\"", want);
    }
  char fix[80];
  snprintf(fix, sizeof fix, "{0x%08xu, 0x%08xu, 0x%08xu, 0x%08xu}", cg_lop3_fix(0), cg_lop3_fix(1), cg_lop3_fix(2),
           cg_lop3_fix(3));
  CHECK(h.data && strstr(h.data, fix), "the helpers lack F %s", fix);
  rb_buf_free(&h);
  char *lop3 = emit(CG_STRAT_LOP3), *xor = emit(CG_STRAT_XOR);
  CHECK(lop3 && strstr(lop3, "lop3_a(a, v, con, s)") && strstr(lop3, "mma16816(fix[sb][nb][p], F,") &&
            strstr(lop3, "#define SETS 2"),
        "the lop3 kernel does not decode with the table");
  CHECK(xor && !strstr(xor, "lop3_") && strstr(xor, "0x80008000u"), "the xor kernel changed its decode");
  free(lop3);
  free(xor);
  /* The staged design has no lop3 form: a batch tile of 32 is refused by name. */
  CgKernel k;
  memset(&k, 0, sizeof k);
  k.op.kind = CG_LINEAR, k.op.K = 64, k.op.nseg = 1, k.op.N[0] = 16, k.op.paths = 1;
  k.sched.strategy = CG_STRAT_LOP3, k.sched.batch_max = 64, k.sched.tile[3] = 32;
  RbBuf src = {0}, err = {0};
  char entry[CG_ENTRY_MAX];
  CHECK(cg_emit_linear(&k, &src, entry, &err) == RB_EUSER && err.data && strstr(err.data, "lop3"),
        "a lop3 batch tile of 32 was not refused: %s", err.data ? err.data : "(no error)");
  rb_buf_free(&src);
  rb_buf_free(&err);
}

int main(void) {
  rng ^= (uint64_t)time(NULL) << 1;
  check_registers();
  check_tile_sums();
  check_emitted();
  printf("%s: %d failure%s\n", failures ? "FAIL" : "ok", failures, failures == 1 ? "" : "s");
  return failures != 0;
}
