/* archs.c: the CUDA architectures each kernel's source is written for, so that a
 * target it cannot run on is refused by name before NVRTC fails on a PTX line.
 *
 * Every kernel today needs sm_80: mma.sync m16n8k16 on fp16 (the linears' xor and mma
 * strategies), cvt.rn to bf16 (the training kinds), 16-byte non-coherent loads; the
 * sm_90 features (griddepcontrol, the L2 prefetch before it) sit behind __CUDA_ARCH__.
 * A strategy on wgmma or TMA would be written for sm_90a alone: `only` says so.
 * tests/codegen/strategy_archs.sh compiles each strategy's sources for every arch it
 * accepts (sm_80, 86, 89, 90, 90a) and checks the refusal of one below. */
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"

typedef struct {
  int min_sm;       /* from this compute capability on (x 10: 80 = sm_80) */
  const char *only; /* or exactly this arch-specific target ("sm_90a"); NULL: none */
} Archs;

/* Every kind and strategy today: sm_80 on. A strategy written for one arch-specific
 * target returns {0, "sm_90a"} here, keyed on k->sched.strategy. */
static Archs kernel_archs(const CgKernel *k) {
  (void)k;
  return (Archs){80, NULL};
}

/* "sm_90" -> 90, "sm_90a" -> 90; -1 for anything else. */
static int sm_number(const char *arch) {
  if (!arch || strncmp(arch, "sm_", 3) != 0) return -1;
  char *end;
  long v = strtol(arch + 3, &end, 10);
  if (end == arch + 3 || v < 10 || v > 999 || (*end && (end[1] || (*end != 'a' && *end != 'f')))) return -1;
  return (int)v;
}

int cg_cuda_arch_check(const CgKernel *k, const char *arch, RbBuf *err) {
  Archs a = kernel_archs(k);
  int sm = sm_number(arch);
  if (a.only ? arch && strcmp(arch, a.only) == 0 : sm >= a.min_sm) return RB_OK;
  /* The caller names the kernel; this says what it needs. */
  if (a.only)
    rb_buf_printf(err, "its source is written for %s alone, not %s\n", a.only, arch ? arch : "(none)");
  else
    rb_buf_printf(err, "its source needs sm_%d or later, not %s\n", a.min_sm, arch ? arch : "(none)");
  return RB_EUSER;
}
