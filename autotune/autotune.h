/* autotune.h: the autotuner's CPU half (prefix at_): the search space of a
 * kernel's schedules, the 3% rule that picks among measured candidates, and
 * the per-GPU tuning database. It changes a kernel's schedule, never its op.
 * README.md in this folder documents the knobs, the file format and the rule. */
#ifndef RABIT_AUTOTUNE_H
#define RABIT_AUTOTUNE_H

#include <stddef.h>

#include "codegen/codegen.h"
#include "ir/base.h"

/* ==== space.c: the candidate schedules of one kernel ==== */

/* What the device allows, as the driver reports it (the tuner fills it from
 * cuDeviceGetAttribute). A field of 0 is unknown and prunes nothing. */
typedef struct {
  int regs_per_thread;   /* 255 on every GPU since Kepler */
  int regs_per_block;    /* CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: 65536 */
  int smem_per_block;    /* bytes a block gets without opting in: 49152 */
  int threads_per_block; /* CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: 1024 */
  int sm_count;          /* CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: 132 on the H200 */
} AtLimits;

/* Why a candidate left the space, for the tuner's report and the tests. */
typedef enum {
  AT_PRUNE_THREADS, /* more threads per block than the device has */
  AT_PRUNE_SMEM,    /* more shared memory per block than the device gives */
  AT_PRUNE_REGS,    /* its loop-carried registers exceed the per-thread budget: it would spill */
  AT_PRUNE_SMS,     /* rows per block > 1 leaving over half the SMs without a block */
  AT_PRUNE_TARGET,  /* the target's geometry refused it (its own limits) */
  AT_NPRUNE
} AtPrune;

typedef struct {
  CgSchedule sched;
  unsigned threads, smem; /* per block, from the target's geometry */
  int regs;               /* loop-carried registers per thread, estimated; 0: not estimated */
} AtCandidate;

typedef struct {
  AtCandidate *c; /* c[0] is the default schedule */
  int n, cap;
  int pruned[AT_NPRUNE]; /* candidates removed, by reason */
} AtSpace;

/* The candidates of kernel k on target t, in the fixed order README.md
 * documents: the default first (the incumbent; kept whatever lim says, since
 * it is what runs untuned), then every combination of the knobs the target's
 * emitter honours for k's kind, pruned by lim (NULL: no device limits) and by
 * the target's geometry, so every candidate is one t->emit accepts. A kind
 * with no knobs (and any kind on a target with no table) has the default
 * alone. Returns RB_OK, RB_EUSER (the target refuses k's default, reason in
 * err) or RB_EINTERNAL. Free with at_space_free, on failure too. */
int at_space_build(const CgTarget *t, const CgKernel *k, const AtLimits *lim, AtSpace *out, RbBuf *err);
void at_space_free(AtSpace *s);

/* ==== choose.c: the 3% rule ==== */

/* A candidate faster than the incumbent by less than this is noise: it does
 * not replace it. Two tunings therefore agree, or differ only by pairs within it. */
#define AT_MARGIN 0.03

/* One candidate's measurement: its median time (us; not finite or <= 0: not
 * timed, e.g. it did not build) and whether its output matched the reference. */
typedef struct {
  double us;
  int valid;
  const char *what; /* its description, for the log; NULL: "candidate i" */
} AtTiming;

/* Visit t[0..n) in order (t[0] the default): the first valid timed candidate
 * is the incumbent, and a later one replaces it only when valid and at least
 * AT_MARGIN faster (us <= (1 - AT_MARGIN) * incumbent's). Each invalid
 * candidate gets a line in log ("... failed validation; never chosen").
 * Returns the chosen index, or -1 when no candidate is valid and timed.
 * The choice is within AT_MARGIN of the fastest valid candidate: every
 * candidate not taken was slower than 0.97 times an incumbent at least as
 * slow as the last. */
int at_choose(const AtTiming *t, int n, RbBuf *log);

/* One kernel's result in one tuning: the chosen candidate and its time. */
typedef struct {
  int choice;
  double us;
} AtPick;

/* Two tunings a[0..n) and b[0..n) of the same kernels agree when each kernel
 * chose the same candidate, or its two picks' times are within AT_MARGIN
 * (the faster above (1 - AT_MARGIN) times the slower): the rule lets noise
 * flip such a pair, never more. Returns the number of kernels that break
 * this, each named in why ("kernel i: ..."). */
int at_picks_disagree(const AtPick *a, const AtPick *b, int n, RbBuf *why);

#endif
