/* trainer.h: the trainer's internal header (prefix tr_). RaBiT QAT, its
 * initialization and the PTQ baseline live behind it, one section per file.
 * Everything here runs on the CPU unless a section says otherwise. */
#ifndef RABIT_TRAINER_H
#define RABIT_TRAINER_H

#include <stdint.h>

#include "ir/base.h"

/* ==== ptq.c: residual SVID, the initialization and the PTQ baseline ==== */

#define TR_MAX_PATHS 4

typedef struct {
  /* T: Gauss-Seidel refinement rounds after the greedy pass (0 = greedy only). */
  int rounds;
  /* Round g and h to f16 as soon as each is fitted, so that the signs derived
   * after them and the reported error are those of the model as stored. */
  int f16_scales;
  /* Optional preconditioning of DESIGN (a), strictly positive, or NULL:
   * the fit minimises ||diag(row_weight) (W - W_hat) diag(col_weight)||
   * (row_weight = s_out^a, length N; col_weight = s_in^b, length K). */
  const float *row_weight;
  const float *col_weight;
} TrPtqOptions;

typedef struct {
  double rel_err;           /* ||W - W_hat|| / ||W|| of the output */
  double rel_err_weighted;  /* the same in the preconditioned norm (= rel_err without weights) */
  double rel_err_path[TR_MAX_PATHS]; /* after the output's paths 1..p */
  double rel_err_greedy;    /* the greedy pass alone (weighted norm) */
  double rel_err_gs;        /* the last refinement round's own decoupled fit (weighted; greedy if T = 0) */
  int round_kept;           /* whose scales were kept: 0 greedy, t = after round t */
  int power_iters;          /* power iterations in all, for progress lines */
} TrPtqStats;

/* Quantize one weight W (N, K) float32 row-major to k = 1..4 residual binary
 * paths. Outputs, caller-allocated:
 *   bits (k, N, ceil(K/32)) canonical words (bit j of word w: sign of column
 *        32w + j, -1 -> 1, sign(0) = +1, pad bits 0),
 *   g (k, N) and h (k, K) float (f16-representable when opt->f16_scales).
 * The bits are always the coupled forward's signs for the returned scales:
 * R_0 = W, B_p = sign(R_{p-1}), R_p = R_{p-1} - diag(g_p) B_p diag(h_p), with R
 * float32 updated elementwise as R -= s * (g_n * h_j) in that order (s = +-1),
 * so any consumer can re-derive them from W exactly. opt may be NULL (greedy,
 * float scales, no weights); stats may be NULL; err gets a message on failure.
 * Deterministic: no randomness, no threads, a fixed start for power iteration.
 * Returns RB_OK, RB_EUSER (bad shape or k, non-finite W, a scale out of f16
 * range) or RB_EINTERNAL (out of memory). */
int tr_ptq_linear(const float *W, int N, int K, int k, const TrPtqOptions *opt, uint32_t *bits,
                  float *g, float *h, TrPtqStats *stats, RbBuf *err);

#endif
