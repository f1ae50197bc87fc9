/* lop3.c: the lop3 strategy's sign decode, as a table the emitter writes out and the
 * CPU test checks (tests/codegen/test_lop3.c).
 *
 * The xor decode moves bit r of a lane's word into the fp16 sign bit (one shift, one
 * LOP3 per A register: 2 instructions per 2 weights). The lop3 decode leaves the bit
 * where a cheap form of the word already has it in a mantissa bit m in 6..9 of both
 * halves, and ORs in the exponent of C = 2^(10 - m):
 *
 *   A = (form(w) & (1 << m | 1 << (m + 16))) | C   =  C + b    (exact: 2|3, 4|5, 8|9, 16|17)
 *
 * The four forms are computed once per word (3 instructions for 16 registers):
 *   0: w          bits 6..9 as they are
 *   1: w >> 4     bits 10..13 -> 6..9
 *   2: w << 4     bits 2..5 -> 6..9
 *   3: the two bytes of each half swapped (one PRMT): bits 14, 15 -> 6, 7 and 0, 1 -> 8, 9
 * Bits that the shifts carry across the halves land outside the mask. With the layout's
 * bit r = 4 s + q for register q of k16 step s, m (hence C) depends on q alone:
 * q = 0, 1, 2, 3 -> m = 8, 9, 6, 7 -> C = 4, 2, 16, 8.
 *
 * A set bit is a -1 (the packed format: +1 -> 0, -1 -> 1), so the sign is s = 1 - 2 b and
 * A + F = b - 1/2 = -s / 2 for F = -(C + 1/2) (exact in fp16): one more mma a k16 step with
 * the constant fragment F (the same in every lane and step) into a per-path accumulator
 * turns the sums of A into minus half the signed sums; -2 g_p then multiplies at the end.
 * No activation is scaled, so nothing can overflow fp16. */
#include "codegen/cuda/cuda.h"

static const int form_of[4][4] = {{3, 3, 2, 2}, {2, 2, 0, 0}, {0, 0, 1, 1}, {1, 1, 3, 3}}; /* [s][q] */
static const int shift_of[4] = {0, -4, 4, 0}; /* form f moves bit r to r + shift (form 3: see below) */

static int mantissa_bit(int r, int form) {
  if (form == 3) return r >= 14 ? r - 8 : r + 8; /* the byte swap within a half */
  return r + shift_of[form];
}

CgLop3Reg cg_lop3_reg(int s, int q) {
  const int r = 4 * s + q, f = form_of[s][q], m = mantissa_bit(r, f);
  const unsigned c = (unsigned)(25 - m) << 10; /* fp16 2^(10 - m): biased exponent 25 - m */
  return (CgLop3Reg){.form = f, .mask = 1u << m | 1u << (m + 16), .con = c | c << 16};
}

/* fp16 -(C + 1/2) for C = 2^e, e in 1..4: sign, exponent e + 15, mantissa 2^-(e + 1). */
unsigned cg_lop3_fix(int q) {
  const unsigned c = cg_lop3_reg(0, q).con & 0xffffu, e = (c >> 10) - 15;
  const unsigned h = 0x8000u | c | 1u << (9 - e);
  return h | h << 16;
}

unsigned cg_lop3_form(int form, unsigned w) {
  switch (form) {
  case 0: return w;
  case 1: return w >> 4;
  case 2: return w << 4;
  default: return (w >> 8 & 0x00ff00ffu) | (w << 8 & 0xff00ff00u);
  }
}

void cg_lop3_emit_helpers(RbBuf *b) {
  rb_buf_printf(b,
      "/* lop3 decode (codegen/cuda/lop3.c): four forms of a lane's word, then per A register\n"
      " * one LOP3, A = (form & mask) | C = C + bit; the constant fragment F = -(C + 1/2) turns\n"
      " * the sums into minus half the signed sums (a set bit is -1). */\n"
      "__device__ __forceinline__ void lop3_forms(unsigned (&v)[4], unsigned w) {\n"
      "  v[0] = w;\n"
      "  v[1] = w >> 4;\n"
      "  v[2] = w << 4;\n"
      "  asm(\"prmt.b32 %%0, %%1, 0, 0x2301;\" : \"=r\"(v[3]) : \"r\"(w)); /* the bytes of each half swapped */\n"
      "}\n\n"
      "/* C per register q, in constant memory: a value ptxas cannot fold into the LOP3, so\n"
      " * that it stays in a register and (v & mask) | C is one LOP3 (mask the immediate), not\n"
      " * an AND and an OR with two immediates. */\n"
      "__constant__ unsigned lop3_con[4] = {0x%08xu, 0x%08xu, 0x%08xu, 0x%08xu};\n\n"
      "/* The four A registers of k16 step S (a constant once the callers' loops unroll); c: lop3_con. */\n"
      "__device__ __forceinline__ void lop3_a(unsigned (&a)[4], const unsigned (&v)[4], const unsigned (&c)[4], int S) {\n",
      cg_lop3_reg(0, 0).con, cg_lop3_reg(0, 1).con, cg_lop3_reg(0, 2).con, cg_lop3_reg(0, 3).con);
  for (int s = 0; s < 4; s++) {
    rb_buf_printf(b, "  %sif (S == %d) {\n", s ? "else " : "", s);
    for (int q = 0; q < 4; q++) {
      CgLop3Reg r = cg_lop3_reg(s, q);
      const int c = 1 << (((r.con >> 10) & 31) - 15); /* C, from its fp16 exponent */
      rb_buf_printf(b, "    a[%d] = (v[%d] & 0x%08xu) | c[%d]; /* bits %d, %d: %d + bit */\n", q, r.form, r.mask, q,
                    4 * s + q, 4 * s + q + 16, c);
    }
    rb_buf_puts(b, "  }\n");
  }
  rb_buf_puts(b, "}\n\n");
  rb_buf_printf(b, "#define LOP3_FIX {0x%08xu, 0x%08xu, 0x%08xu, 0x%08xu} /* F = -(C + 1/2) per register */\n\n",
                cg_lop3_fix(0), cg_lop3_fix(1), cg_lop3_fix(2), cg_lop3_fix(3));
}
