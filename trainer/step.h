/* step.h: the training step's own state, shared by the files that make it:
 * qat.c (the graph's launchers, the step, evaluation), init.c (weights and
 * the initializations), optim.c (clip, Muon, AdamW). Nothing outside
 * trainer/ includes it; the API is trainer.h's tr_step_*. */
#ifndef RABIT_TRAINER_STEP_H
#define RABIT_TRAINER_STEP_H

#include "codegen/codegen.h"
#include "runtime/formats/formats.h"
#include "runtime/runtime.h"
#include "trainer/trainer.h"


/* A quantized weight: trainable latent W and scales, its derived W_hat and signs. */
typedef struct {
  const char *name;
  int N, K, k, line;
  int nlat;               /* latent matrices: 1 (RaBiT's shared W), k (standard QAT's W_p) */
  size_t w_off;           /* floats into the W region of params/grads: (nlat, N, K) */
  size_t s_off;           /* floats into the scales region: g (k, N) then h (k, K) */
  int group;              /* its Muon shape group */
  size_t calib_off;       /* floats into calib_acc: N of sum |dy|, then K of sum |x| */
  RtDevPtr what;          /* bf16 (N, K) */
  RtDevPtr bits;          /* (k, N, ceil(K/32)) words */
  RtDevPtr dense;         /* the teacher's bf16 (N, K) */
} QWeight;

/* Latent matrices of one shape, contiguous in the W region: Muon runs them as one batch. */
typedef struct {
  int N, K, count;
  size_t w_off;
} MuonGroup;

/* A frozen tensor by name: norms (f32) and dense matrices (bf16). */
typedef struct {
  const char *name;
  RtDevPtr p;
} Frozen;

/* One forward pass's buffers (the student's, or the teacher's). */
typedef struct {
  RtDevPtr *val;    /* per value: fp32 (rows, width) */
  RtDevPtr *shadow; /* per value read by a GEMM: its bf16 copy, else 0 */
  int *cast_epoch;  /* the pass that last cast the value to its shadow */
  int teacher;
} Pass;

struct TrStep {
  RtGpu *gpu;
  RtBlas *blas;
  const CgTarget *target;
  TrStepOptions o;
  RtCompiled c;
  IrGraph *g;
  int compiled;
  int T, B, S;           /* the batch now running: T = B S rows */
  int T_max, BS2_max;    /* buffer sizes: rows, and B * heads * S^2 of attention scores */
  int planning;          /* 1 while collecting kernels: launches and products do nothing */
  int forward_only;      /* an evaluation forward: no teacher, loss, backward or update */
  int epoch;             /* counts passes, for the shadows' casts */
  int nforward;          /* nodes before the loss: the forward */

  /* kernels, collected by a planning pass, then built and loaded */
  CgKernel *kern;
  RtFunction *fn;
  CgGeometry *geo;
  RtModule **mod;
  int nkern, capkern;

  /* weights */
  QWeight *qw;
  int nqw;
  MuonGroup *groups;
  int ngroups;
  Frozen *frozen;
  int nfrozen;
  RbMap qindex, findex; /* name -> index into qw / frozen */
  size_t nW, nS;        /* floats of the W region and of the scales region */

  /* device memory */
  RtDevPtr params, grads; /* [W | scales] each, fp32 */
  RtDevPtr muon_buf, muon_u, adam_m, adam_v;
  RtDevPtr scalars, sumsq_parts, sumsq_total, muon_norms;
  RtDevPtr ns_x, ns_xn, ns_a, ns_b; /* Newton-Schulz scratch, bf16, sized for the largest group */
  RtDevPtr derive_part;
  RtDevPtr tokens, row_loss, dy16, losses;
  RtDevPtr att_q, att_k, att_v, att_s, att_p, att_o, att_do, att_dp, att_ds, att_dq, att_dk, att_dv;
  RtDevPtr *allocs;
  int nallocs, capallocs;
  Pass student, teacher;
  RtDevPtr teacher_hidden; /* (L, T, D) when gamma > 0 */
  int nmse;                /* hidden_mse nodes run in this pass: their slots in losses */
  int calibrating;         /* the FP model's CE forward and backward, gathering |x| and |dy| (tr_step_init_rabit) */
  RtDevPtr targets;        /* (T_max) next-token ids of the calibration's CE */
  RtDevPtr calib_acc;      /* per weight: sum |dy| (N) then sum |x| (K), at calib_off */
  RtDevPtr calib_parts, calib_tmp; /* (CG_COL_ABS_PARTS, max N or K) and (max N or K) */
  char ir_hash[33];
};

/* ==== qat.c: what the other step files launch through ==== */

/* One device allocation, freed with the step. */
int tr_dev_alloc(TrStep *s, RtDevPtr *p, size_t bytes);
/* A value's row width: the product of its known dims (the rows are T). */
int tr_width(const IrType *t);
/* An op of kind with every field zero, for the caller to fill. */
CgOp tr_op(CgKind kind);
/* Launch the kernel of op over extent n (registered while planning; nothing runs then). */
int tr_launch(TrStep *s, const CgOp *op, long long n, const CgArgv *av);
/* A cuBLAS product, or nothing while planning. */
int tr_gemm(TrStep *s, const RtGemm *g);
/* out (m) = the fixed-order column sums of in (rows, m). */
int tr_reduce(TrStep *s, RtDevPtr out, RtDevPtr in, int rows, int m);
/* Everything before the update (TRAINING.md) on the current W_hat, or while calibrating the FP
 * model's CE pass (which reads the dense weights and derives nothing). */
int tr_step_body(TrStep *s);
/* Node i is of the forward (before the loss). */
int tr_is_forward_node(const TrStep *s, int i);

/* ==== init.c: weights, layout, the initializations ==== */

/* The weights the forward binds: trainable (quantized linears) and frozen (uploaded now). */
int tr_collect_weights(TrStep *s, const RtSafetensors *st, RbBuf *err);
/* Shape groups and offsets of the W and scales regions. */
int tr_lay_out(TrStep *s);
/* W from the file, (g, h) by ptq.c's fit with rounds rounds and, when given, the preconditioning
 * weights per quantized weight; the teacher's bf16 copies; all uploaded. */
int tr_init_weights(TrStep *s, const RtSafetensors *st, float **row_w, float **col_w, int rounds, RbBuf *err);

/* ==== optim.c ==== */

/* The gradient norm over every trainable gradient and the clip coefficient, into the scalars. */
int tr_optim_norm(TrStep *s);
/* Muon for every latent, AdamW for the scales, with the clip coefficient tr_optim_norm left. */
int tr_optim_update(TrStep *s);

#endif
