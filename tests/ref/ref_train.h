/* ref_train.h: a hand-written CPU reference of one whole RaBiT QAT step (trainer/TRAINING.md):
 * the coupled sign derivation, the teacher and student forwards, KL + hidden MSE, the backward
 * pass, clipping, Muon and AdamW. Double precision inside; it interprets no IR graph, so it is
 * the oracle for the GPU trainer and cannot share the compiler's bugs. */
#ifndef RABIT_REF_TRAIN_H
#define RABIT_REF_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#define REF_MAX_L 4

typedef struct {
  int V, D, F, L, H, HKV, HD;
  double theta, eps;
  int paths[7]; /* k of each linear, in REF_Q .. REF_DOWN order */
} RefTrainDims;

/* samples/tiny.ir: V 256, D 64, F 160, L 2, H 4, HKV 2, HD 16, theta 10000, eps 1e-5,
 * paths q 2, k 2, v 3, o 2, gate 2, up 2, down 1. */
RefTrainDims ref_train_dims_tiny(void);

enum { REF_Q, REF_K, REF_V, REF_O, REF_GATE, REF_UP, REF_DOWN, REF_NLIN };

typedef struct {
  int N, K, k;
  float *W;       /* (N, K) latent */
  float *g, *h;   /* (k, N), (k, K) scales */
  float *dense;   /* (N, K) the teacher's weight */
  uint32_t *bits; /* (k, N, ceil(K/32)) canonical signs; filled by the derivation, or fixed (frozen-signs mode) */
} RefTrainLinear;

typedef struct {
  RefTrainDims d;
  float *embed; /* (V, D), also the tied lm_head of student and teacher */
  float *norm1[REF_MAX_L], *norm2[REF_MAX_L], *final_norm; /* (D) each */
  RefTrainLinear lin[REF_MAX_L][REF_NLIN];
} RefTrainModel;

/* Gradients, double, same layouts as the parameters. dW is d loss / d W_hat (straight through);
 * dg, dh the true gradients with the signs held constant. The frozen tensors' gradients are
 * the student's alone (the teacher is a constant), for the finite-difference checks. */
typedef struct {
  RefTrainDims d;
  double *dW[REF_MAX_L][REF_NLIN]; /* (N, K) */
  double *dg[REF_MAX_L][REF_NLIN]; /* (k, N) */
  double *dh[REF_MAX_L][REF_NLIN]; /* (k, K) */
  double *dembed;                  /* (V, D): input embedding and tied lm_head together */
  double *dnorm1[REF_MAX_L], *dnorm2[REF_MAX_L], *dfinal_norm; /* (D) each */
} RefTrainGrads;

/* N, K of linear `which` under d: q (H HD, D), k and v (HKV HD, D), o (D, H HD), gate and up
 * (F, D), down (D, F). */
void ref_train_linear_shape(RefTrainDims d, int which, int *N, int *K);

/* A random model: dense ~ N(0, 1/K), embed ~ N(0, 0.1^2) (logits of order 1), norms
 * 1 + N(0, 0.1^2); W = dense (the real run's step 0; _ex: plus N(0, (noise/sqrt K)^2)); g, h
 * from a greedy rank-1 fit of |R| path by path (the peer's stand-in initialization); bits
 * derived by ref_derive. Returns 0, or -1 out of memory / bad dims (nothing left allocated). */
int ref_train_model_random(RefTrainModel *m, RefTrainDims d, uint64_t seed);
int ref_train_model_random_ex(RefTrainModel *m, RefTrainDims d, uint64_t seed, double noise);
void ref_train_model_free(RefTrainModel *m);
/* A deep copy of src's tensors into dst (for the finite differences). 0 or -1. */
int ref_train_model_copy(RefTrainModel *dst, const RefTrainModel *src);

int ref_train_grads_alloc(RefTrainGrads *g, RefTrainDims d); /* zeroed; 0 or -1 */
void ref_train_grads_free(RefTrainGrads *g);

/* TRAINING.md's rule, bit exact: R = W; per path gh = g_p[n] h_p[c] (fp32), B = +1 and R -= gh
 * when R >= 0, else B = -1 and R += gh; acc += B gh; no fused multiply-add. Fills l->bits
 * (pad bits 0) and, when what != NULL, what (N, K) with acc, the fp32 W_hat before bf16. */
void ref_derive(RefTrainLinear *l, float *what);

typedef struct {
  double gamma;     /* weight of the hidden MSE term */
  int frozen_signs; /* use l->bits as given instead of deriving them from W */
  int bf16_what;    /* W_hat = bf16(fp32 acc) as the GPU does; else W_hat = sum_p g_p B_p h_p in
                     * double (smooth in g and h: what the finite differences need) */
  /* The model whose embed, norms and dense weights the teacher uses; NULL: m itself. The
   * finite differences of a frozen tensor perturb the student's copy only. */
  const RefTrainModel *teacher;
  /* A test hook: add nudge_delta to W_hat[nudge_index] of linear (nudge_layer, nudge_lin)
   * after the derivation (finite differences of d loss / d W_hat). Off when nudge_delta is 0. */
  int nudge_layer, nudge_lin;
  size_t nudge_index;
  double nudge_delta;
} RefTrainOptions;

/* Loss of the batch tokens (B, S) (T = B S rows, sequences of S): kl + (gamma / L) sum_l mse_l,
 * and the gradients into g when g != NULL (overwritten). kl and the per-layer mse are
 * reported apart (either may be NULL). Exits the process on out of memory (test code). */
double ref_train_loss(const RefTrainModel *m, const int32_t *tokens, int B, int S, const RefTrainOptions *o,
                      RefTrainGrads *g, double *kl, double *mse /* (L) or NULL */);

/* The logits (T, V) of the student (teacher = 0) or of the teacher (teacher = 1). */
void ref_train_logits(const RefTrainModel *m, const int32_t *tokens, int B, int S, const RefTrainOptions *o,
                      int teacher, double *logits);

/* Optimizer state. Set lr_w, lr_s, max_norm (the schedule's scale already applied: see
 * ref_train_lr_scale); t counts the steps taken: ref_optim_step increments it first, so the
 * first step's bias correction uses t = 1. */
typedef struct {
  double lr_w, lr_s, max_norm;
  int t;
  RefTrainDims d;
  double *buf[REF_MAX_L][REF_NLIN];                /* (N, K) Muon momentum */
  double *mg[REF_MAX_L][REF_NLIN], *vg[REF_MAX_L][REF_NLIN]; /* (k, N) AdamW moments of g */
  double *mh[REF_MAX_L][REF_NLIN], *vh[REF_MAX_L][REF_NLIN]; /* (k, K) AdamW moments of h */
} RefOptim;

/* Zeroed state for d, t = 0, max_norm 1.0; lr_w, lr_s as given. 0 or -1. */
int ref_optim_init(RefOptim *o, RefTrainDims d, double lr_w, double lr_s);
void ref_optim_free(RefOptim *o);

/* One optimizer step of TRAINING.md in place: clip by the global L2 norm of every dW, dg, dh
 * (coefficient min(1, max_norm / (norm + 1e-6))); Muon (nesterov, mu 0.95, 5 quintic
 * Newton-Schulz steps in double, transposed when N > K, lr_w 0.2 sqrt(max(N, K))) for each W;
 * AdamW (0.9, 0.999, eps 1e-8, bias corrected) for g and h, clamped at >= 0. The norm before
 * clipping goes to *grad_norm (may be NULL). The frozen tensors are not touched. */
void ref_optim_step(RefTrainModel *m, const RefTrainGrads *g, RefOptim *o, double *grad_norm);

/* TRAINING.md's schedule: min(1, (step + 1) / warmup) 0.5 (1 + cos(pi min(1, step / steps))),
 * floored at 0.02 (step from 0). */
double ref_train_lr_scale(int step, int steps, int warmup);

/* Newton-Schulz of TRAINING.md in double: X (rows, cols) = u / max(||u||, 1e-7), transposed
 * first when rows > cols, 5 quintic steps, transposed back; out (rows, cols). */
void ref_newton_schulz(const double *u, int rows, int cols, double *out);

/* ---- one quantized linear in float64, for the PyTorch peer's gradcheck ----
 * The peer derives its signs in float64, so these do too (the fp32 rule of ref_derive would
 * flip the signs of entries where |R| is below fp32's resolution, and the gradients compared
 * at 1e-9 would differ there): R = W; B = sign(R) (sign(0) = +1); R -= B g h; W_hat += B g h. */
/* y (T, N) = x (T, K) W_hat^T; signs (k, N, K) of +-1 and what (N, K) out (caller-allocated). */
void ref_qlinear_forward(const double *W, const double *g, const double *h, int N, int K, int k,
                         const double *x, int T, double *y, int8_t *signs, double *what);
/* From dy (T, N): dW = dW_hat = dy^T x (N, K); dg (k, N), dh (k, K) with the signs constant;
 * dx (T, K) = dy W_hat (may be NULL). */
void ref_qlinear_backward(const double *g, const double *h, const int8_t *signs, const double *what, int N,
                          int K, int k, const double *x, const double *dy, int T, double *dW, double *dg,
                          double *dh, double *dx);

#endif
