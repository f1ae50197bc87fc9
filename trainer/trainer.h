/* trainer.h: the trainer's internal header (prefix tr_). RaBiT QAT, its
 * initialization and the PTQ baseline live behind it, one section per file.
 * Everything here runs on the CPU unless a section says otherwise. */
#ifndef RABIT_TRAINER_H
#define RABIT_TRAINER_H

#include <stdint.h>

#include "frontend/frontend.h"
#include "ir/base.h"
#include "runtime/cuda/gpu.h"
#include "runtime/runtime.h"
#include "runtime/text/text.h"

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

/* ==== quantize.c: PTQ of a whole weight file, the IR choosing what and with what k ==== */

/* Progress of tr_quant_model, reported on the calling thread: index 0 once
 * before any fitting (only the totals are set), then index 1..count, one per
 * quantized weight, in the order they are written. */
typedef struct {
  int index, count;            /* this weight, of the weights to quantize */
  int per_k[TR_MAX_PATHS + 1]; /* how many of them get k paths */
  int skipped;                 /* weights the IR quantizes that the skip list keeps dense */
  int threads;
  const char *name;            /* the IR's base name: "model.layers.0.self_attn.q_proj" */
  const char *dtype;           /* the input's: "F16", "BF16", "F32" */
  int N, K, k;
  const TrPtqStats *stats;
  double ms;                   /* this weight's fit, on its worker thread */
} TrQuantProgress;

typedef struct {
  const char *ir;        /* the model IR: its quantized linears and their k */
  FeOptions fe;          /* .paths overrides the file's default, not an op's own quant (rabitc --paths) */
  const char *in, *out;  /* full-precision safetensors in; packed safetensors out, written atomically */
  int rounds;            /* TrPtqOptions.rounds */
  int threads;           /* weights fitted at once; 0 = the online CPUs, at most 8 */
  const char *skip;      /* comma-separated POSIX EREs; a weight whose base name one matches stays dense */
  void (*progress)(void *ctx, const TrQuantProgress *p); /* may be NULL */
  void *ctx;
} TrQuantOptions;

typedef struct {
  int quantized, skipped;     /* weights */
  uint64_t params;            /* elements of the quantized weights */
  uint64_t bytes_in, bytes_out, bytes_packed;
  double rel_err;             /* overall: sqrt(sum ||W - W_hat||^2 / sum ||W||^2) */
  double worst;               /* the largest rel_err of one weight, worst_name's */
  char *worst_name;
  double ms;                  /* fitting and writing */
  RbBuf diag;                 /* the frontend's diagnostics when the IR does not compile */
  RbBuf warnings;             /* one line per skip item that matched no weight */
} TrQuantResult;

/* Quantize o->in to o->out as the IR says: every weight bound by a linear
 * whose quant is rabit(paths = k) becomes <base>.bits/.g/.h with that op's k
 * (tr_ptq_linear with f16 scales and o->rounds, on a pool of threads); every
 * other tensor is copied byte for byte. All IR-bound weights are checked
 * (present, full precision, [N, K] as the IR says, F16/BF16/F32) before any
 * work. __metadata__ gets format, paths (the default k), rounds, the input's
 * model and rabit_ir_model. Never prints: progress through o->progress, IR
 * diagnostics in r->diag, other errors (naming the file and tensor) in err.
 * Returns RB_OK, RB_EUSER or RB_EINTERNAL; free r with tr_quant_result_free
 * either way. */
int tr_quant_model(const TrQuantOptions *o, TrQuantResult *r, RbBuf *err);
void tr_quant_result_free(TrQuantResult *r);

/* ==== data.c: token shards ==== */

#define TR_SHARD_VERSION 1
#define TR_MAX_TEXT_BYTES ((size_t)1 << 30) /* a source text is read whole: 1 GiB at most */
#define TR_MAX_SHARD_BYTES ((size_t)4 << 30) /* a shard is read whole: 4 GiB (a 1 GiB text's ids fit) */

/* Read a source text (a file, "-" for stdin) of at most TR_MAX_TEXT_BYTES into
 * text: rabit data prepare and rabit ppl --text. RB_OK, or RB_EUSER with
 * "cannot read 'PATH': why" (naming the cap when it is over) in err. */
int tr_text_read(const char *path, RbBuf *text, RbBuf *err);

typedef enum { TR_SPLIT_TRAIN, TR_SPLIT_HELDOUT } TrSplit;

/* One shard: the ids of one source text, its split, and the text's SHA-256. */
typedef struct {
  TrSplit split;
  uint64_t ntokens;
  uint32_t vocab;                 /* the tokenizer's: every id is below it */
  unsigned char source_sha256[32];
  int32_t *tokens;                /* rb_malloc'ed by tr_shard_read */
} TrShard;

const char *tr_split_name(TrSplit s); /* "train", "heldout" */
/* Write s to path atomically: a 72-byte header (magic "RBTOKENS", version,
 * split, count, vocabulary, SHA-256, XXH3-64 checksum of the header and the
 * ids), then the ids as little-endian int32. The same shard gives the same bytes. */
int tr_shard_write(const char *path, const TrShard *s, RbBuf *err);
/* Read and check a shard: magic, version, split tag, length (truncation),
 * checksum, every id inside the vocabulary. RB_EUSER with a message naming
 * the file and the problem. */
int tr_shard_read(const char *path, TrShard *s, RbBuf *err);
void tr_shard_free(TrShard *s);
/* RB_OK when shard s (named path) may train a model: it is not tagged
 * held-out, and was not made from the evaluation text (eval_sha256, may be NULL). */
int tr_shard_check_trainable(const TrShard *s, const char *path, const unsigned char *eval_sha256, RbBuf *err);

typedef struct {
  const RtTokenizer *tok;
  const char *const *texts;  /* source texts: one shard each */
  int ntexts;
  TrSplit split;
  const char *dir;           /* DIR/<text base name>.shard, created if missing */
  void (*progress)(void *ctx, const char *text, const char *shard, const TrShard *s); /* may be NULL */
  void *ctx;
} TrDataOptions;

/* Tokenize each text with o->tok and write its shard. Nothing is printed. */
int tr_data_prepare(const TrDataOptions *o, RbBuf *err);

/* ==== qat.c: the compiled training step on the GPU (TRAINING.md) ==== */

typedef struct TrStep TrStep;

/* What trains (DESIGN.md): RaBiT's one latent W a layer with the paths derived
 * from it in sequence, or standard QAT's one latent W_p a path, B_p = sign(W_p),
 * each receiving dL/dW_hat. */
typedef enum { TR_METHOD_RABIT, TR_METHOD_STANDARD } TrMethod;

typedef struct {
  const char *ir;         /* the model IR: its forward, which the grad pass extends */
  TrMethod method;
  FeOptions fe;           /* --paths */
  double gamma;           /* hidden-state MSE weight; 0 = KL only */
  const char *weights;    /* full-precision safetensors: the teacher, and the student's initialization */
  int batch, seq;         /* the training batch: batch sequences of seq tokens */
  int eval_batch, eval_seq; /* the evaluation forward's windows (sizes the buffers); 0 = none */
  int ptq_rounds;         /* the initialization's refinement rounds (rabit quantize's --rounds) */
  int threads;            /* CPU threads for the initialization; 0 = the online CPUs, at most 16 */
  double max_norm;        /* gradient clip; 0 = 1.0 */
  double mu, beta1, beta2, eps; /* Muon momentum, AdamW; 0 = TRAINING.md's defaults */
  const char *cache_dir;  /* kernel cache; NULL = the default location */
  int jobs;               /* kernel compile threads; 0 = the online CPUs */
} TrStepOptions;

typedef struct {
  double lr_w, lr_s; /* this step's learning rates, schedule applied */
  int t;             /* the optimizer step, from 1 (AdamW's bias correction) */
  int update;        /* 0: forward and backward only (gradients, no optimizer) */
} TrStepHyper;

typedef struct {
  double loss, kl, mse; /* loss = kl + (gamma / L) sum of the layers' normalized MSE */
  double grad_norm;     /* before the clip */
  int updated;          /* the optimizer ran: asked for, and the loss and the norm were finite */
} TrStepResult;

/* Compile the IR's training graph (the grad pass), load the weights (W from
 * the file, g and h fitted as rabit quantize fits them, in fp32), lay out
 * parameters, gradients and optimizer state in one allocation each, and
 * build every training kernel through the cache. Errors name the file. */
int tr_step_open(TrStep **out, RtGpu *gpu, const TrStepOptions *o, RbBuf *err);
void tr_step_close(TrStep *s);
/* One step on tokens (batch x seq, host): derivation, teacher and student
 * forward, loss, backward, gradient norm, and with hp->update the clip, Muon
 * and AdamW, which are skipped when the loss or the norm is not finite. */
int tr_step_run(TrStep *s, const int32_t *tokens, const TrStepHyper *hp, TrStepResult *r, RbBuf *err);

/* The function-preserving initialization (DESIGN.md (a)-(c)): calibration
 * statistics from the FP model (mean |x| per input channel of every quantized
 * linear, mean |dL/dy| per output channel under its next-token cross-entropy),
 * then W' = diag(s_out^a) W diag(s_in^b) fitted by ptq.c's residual SVID with
 * rounds Gauss-Seidel rounds and mapped back; the latent W stays the file's.
 * Standard QAT's latents follow from the new scales. */
typedef struct {
  double a, b; /* the exponents of s_out and s_in */
  int rounds;  /* T */
} TrInitOptions;
typedef struct {
  double ce;        /* the FP model's mean next-token cross-entropy over the calibration */
  uint64_t tokens;
} TrInitStats;
/* Re-initialize every quantized weight's scales from batches batches of
 * (batch, seq) tokens (host, batches x batch x seq). Deterministic. */
int tr_step_init_rabit(TrStep *s, const int32_t *tokens, int batches, const TrInitOptions *io, TrInitStats *stats,
                       RbBuf *err);

/* The last calibration's sums for weight i: sum |dL/dy| (N) and sum |x| (K) over its rows. */
int tr_step_calib_sums(TrStep *s, int i, float *sum_dy, float *sum_x);

/* The trainable weights, in the order the IR binds them. */
int tr_step_nweights(const TrStep *s);
const char *tr_step_weight(const TrStep *s, int i, int *N, int *K, int *k);
typedef enum { TR_PART_W, TR_PART_G, TR_PART_H, TR_PART_DW, TR_PART_DG, TR_PART_DH, TR_PART_BITS, TR_PART_WHAT } TrPart;
/* Latent matrices of weight i: 1 for RaBiT, k for standard QAT. */
int tr_step_latents(const TrStep *s, int i);
/* Copy one part of weight i to or from the host: W (latents, N, K), g (k, N), h (k, K) and their gradients fp32;
 * bits (k, N, ceil(K/32)) words; W_hat bf16 (N, K). */
int tr_step_get(TrStep *s, int i, TrPart part, void *host);
int tr_step_set(TrStep *s, int i, TrPart part, const void *host);
/* The optimizer state by region, as a checkpoint saves it. */
typedef enum { TR_REGION_PARAMS, TR_REGION_MUON, TR_REGION_ADAM_M, TR_REGION_ADAM_V, TR_NREGION } TrRegion;
size_t tr_step_region_bytes(const TrStep *s, TrRegion r);
int tr_step_region(TrStep *s, TrRegion r, void *host, int upload);
/* Weight i's place in the regions (floats): W at w_off of the first nW floats of
 * TR_REGION_PARAMS and of TR_REGION_MUON; g at nW + s_off, h after it; the
 * Adam regions hold the scales alone (g at s_off). */
void tr_step_weight_offsets(const TrStep *s, int i, size_t *w_off, size_t *s_off, size_t *nW);
const char *tr_step_model(const TrStep *s);   /* the IR's model name */
const char *tr_step_ir_hash(const TrStep *s); /* the IR text's hash, hex */
/* After a step whose loss or gradient norm is not finite: names the first
 * tensor (gradient or parameter) holding a NaN or inf, into what. */
void tr_step_find_nonfinite(TrStep *s, char *what, size_t n);

/* ==== train.c: the loop ==== */

/* The training token stream: every shard of a train split, in name order. */
typedef struct {
  int32_t *tokens;
  uint64_t ntokens;
  uint32_t vocab;
  int nshards;
} TrTrainData;

/* Load DIR's shards; each must be trainable: tagged train, and not made from
 * any text of eval_dir's held-out shards (may be NULL). Errors name the shard. */
int tr_train_data_load(const char *dir, const char *eval_dir, TrTrainData *d, RbBuf *err);
void tr_train_data_free(TrTrainData *d);
/* batch windows of seq tokens at random starts drawn from *rng (advanced): out (batch, seq). */
void tr_train_batch(const TrTrainData *d, int batch, int seq, uint64_t *rng, int32_t *out);
/* The learning-rate multiplier of TRAINING.md's schedule at step (from 0) of steps. */
double tr_lr_scale(int step, int steps, int warmup);

typedef enum { TR_EVENT_READY, TR_EVENT_STEP, TR_EVENT_EVAL, TR_EVENT_CHECKPOINT } TrEvent;

typedef struct {
  TrEvent event;
  const char *text;    /* READY: what will run; CHECKPOINT: the file */
  int step, steps;     /* steps done, of the run's total */
  double loss, kl, mse, grad_norm, tok_per_s, eta_s;
  double val_loss, val_ppl; /* EVAL */
  int windows;         /* EVAL: validation windows */
} TrTrainProgress;

typedef struct {
  TrStepOptions step;  /* the model, the weights, gamma, batch x seq, ... */
  const char *data;    /* the train split's shards */
  const char *eval_data; /* the held-out shards (rabit eval's DIR): validation, and refused texts; may be NULL */
  const char *out;     /* the output directory */
  const char *method;  /* "rabit" */
  uint64_t tokens, seed;
  double lr_w, lr_s;
  int warmup;          /* steps */
  int ckpt_every, eval_every, eval_windows, log_every; /* steps; 0: at the end (windows: all) */
  int max_steps;       /* stop this run after so many steps (0: none); the budget's schedule is kept */
  int resume;          /* continue from out/checkpoint.safetensors */
  int test_nan_at_step; /* tests: a NaN in a scale before this step (from 1); 0: none */
  const char *init;     /* "greedy" (rabit quantize's fit; NULL too) or "rabit" (the calibrated, preconditioned one) */
  TrInitOptions init_opt;
  uint64_t calib_tokens; /* the calibration's training tokens; 0 = TR_CALIB_TOKENS */
  const char *export_path; /* where the export goes; NULL = out/model.safetensors (out may then be NULL
                            * for --method ptq, which writes nothing else) */
  void (*progress)(void *ctx, const TrTrainProgress *p);
  void *ctx;
} TrTrainOptions;

typedef struct {
  int steps;
  uint64_t tokens;
  double loss, tok_per_s;   /* tokens/s over the whole run, evaluation and checkpoints included */
  double tok_per_s_steady;  /* over the steps after the first TR_STEADY_AFTER, their wall time (0 if too few) */
  char export_path[1024];   /* empty until the budget is spent */
  /* with validation data: the model of the best validation so far (out/best.safetensors), its step
   * and perplexity; best_path is empty when nothing was validated in this run */
  char best_path[1024];
  int best_step;
  double best_val_ppl;
} TrTrainResult;

#define TR_EVAL_BATCH 4   /* validation windows a forward */
#define TR_CALIB_TOKENS 65536 /* DESIGN.md: about 64k training tokens */
#define TR_STEADY_AFTER 20 /* steps before the steady-state rate starts */

/* Train o->step.ir's student on o->data's windows to o->tokens tokens: steps
 * of batch x seq, the schedule of TRAINING.md, a checkpoint every ckpt_every
 * steps and at the end (atomically, with the loss curve beside it), and when
 * the budget is spent the packed export, out/model.safetensors; with
 * validation data, every validation better than those before it also exports
 * out/best.safetensors (the checkpoint chosen on validation). A NaN or inf
 * stops the run (RB_EUSER) naming the step and the tensor, keeping the last
 * checkpoint. Opens GPU 0. Never prints: progress through o->progress. */
int tr_train(const TrTrainOptions *o, TrTrainResult *r, RbBuf *err);

/* ==== ptq.c (continued): the coupled derivation, shared with export.c ==== */

/* One path of the coupled forward over one row, TRAINING.md's rule exactly:
 * for c in 0..K-1, gh = gn * hp[c] (float32); R >= 0: bit 0, R -= gh; else
 * bit 1, R += gh. row (K) is updated in place; wb (cg_packed_words(K)) gets
 * the row's sign words (it is cleared first, pad bits stay 0). ptq.c's
 * coupled() and tr_derive_bits() both run this one loop. */
void tr_derive_row(float *row, float gn, const float *hp, int K, uint32_t *wb);
/* The sign bits (k, N, cg_packed_words(K)) of the coupled forward from W
 * (N, K) with fp32 scales g (k, N), h (k, K): the bits the trainer's step
 * derives and tr_ptq_linear returns. R (N, K) is scratch, or NULL to have it
 * allocated here. RB_OK, RB_EUSER (bad shape or k) or RB_EINTERNAL (memory). */
int tr_derive_bits(const float *W, int N, int K, int k, const float *g, const float *h, uint32_t *bits, float *R,
                   RbBuf *err);

/* ==== ckpt.c: training checkpoints ==== */

#include "runtime/formats/formats.h"

#define TR_CKPT_VERSION 1

/* One tensor of a checkpoint. Unsigned blobs (u32/u64) are stored as I32/I64
 * with the same bits: PyTorch loads signed integers everywhere. */
typedef struct {
  const char *name;
  RtDtype dtype;
  int rank;
  int64_t shape[RT_MAX_DIMS];
  const void *data; /* borrowed when writing; into the read-only mapping after tr_ckpt_read */
} TrCkptTensor;

/* One point of the loss curve; a loss not measured at that step is NaN. */
typedef struct {
  uint64_t step, tokens;
  double train_loss, val_loss;
} TrCkptPoint;

/* The options the run was started with, recorded so that a resume or a
 * report can see them (file paths as given on the command line). */
typedef struct {
  const char *method;      /* "rabit", "standard", ...; may be NULL */
  int paths;               /* the --paths override, 0 = the IR's */
  double lr_w, lr_s, gamma;
  uint64_t seed, tokens;   /* tokens: the run's budget */
  int batch, seq;
  const char *ir, *weights, *data; /* may be NULL */
} TrCkptOptions;

/* A checkpoint. The caller fills one (borrowing every pointer) for
 * tr_ckpt_write; tr_ckpt_read fills one that owns everything (tensor data
 * points into a read-only mapping of the file) until tr_ckpt_free. */
typedef struct {
  uint64_t step, tokens_seen;
  const uint64_t *data_pos; int ndata_pos; /* the data reader's cursor: opaque */
  const uint64_t *rng; int nrng;           /* RNG state */
  TrCkptOptions opt;
  const char *ir_hash, *model;             /* the IR file's hash (any spelling) and model name; may be NULL */
  const TrCkptPoint *history; int nhistory;
  const TrCkptTensor *tensors; int ntensors;
  const char *const *extra; int nextra;    /* nextra (key, value) string pairs: extra[2i], extra[2i+1] */
  int version;                             /* set by tr_ckpt_read */
  const long long *test_kill_after;        /* test hook for rb_write_durable; NULL */
  void *own;                               /* tr_ckpt_read's mapping and strings */
} TrCkpt;

/* The names of a quantized weight's training state in a checkpoint,
 * "<base>.<part>": the trainer writes them, export reads them. */
typedef enum {
  TR_CKPT_W,       /* "latent": fp32 W (N, K) */
  TR_CKPT_G,       /* "row_scale": fp32 g (k, N) */
  TR_CKPT_H,       /* "col_scale": fp32 h (k, K) */
  TR_CKPT_W_MOM,   /* "latent.muon": Muon's momentum buffer (N, K) */
  TR_CKPT_G_M, TR_CKPT_G_V, /* "row_scale.adam_m", ".adam_v" */
  TR_CKPT_H_M, TR_CKPT_H_V, /* "col_scale.adam_m", ".adam_v" */
  TR_CKPT_NPART
} TrCkptPart;
int tr_ckpt_name(char *out, size_t n, const char *base, TrCkptPart part); /* 0, or -1 when it does not fit */

/* Write c to path as a safetensors file (PyTorch reads it): __metadata__
 * holds the fields as text ("format": "rabit-checkpoint 1", numbers in
 * decimal, doubles exact with %.17g, the history as JSON) and an XXH3-64
 * checksum of the whole file, the checksum's own digits taken as zeros.
 * Tensors are streamed from the caller's memory (no copy) through
 * rb_write_durable: a crash or kill -9 leaves the previous file at path whole.
 * Header order is the caller's; data is laid out 8-byte dtypes first so every
 * mapped tensor is aligned. RB_EUSER (bad tensor, unwritable path) with a
 * message naming the file (and the tensor), or RB_EINTERNAL. */
int tr_ckpt_write(const char *path, const TrCkpt *c, RbBuf *err);
/* Map path, check its checksum and format version, parse every field.
 * A truncated or corrupted file is RB_EUSER naming it; nothing is loaded. */
int tr_ckpt_read(const char *path, TrCkpt *c, RbBuf *err);
const TrCkptTensor *tr_ckpt_find(const TrCkpt *c, const char *name); /* NULL if absent */
const char *tr_ckpt_extra(const TrCkpt *c, const char *key);          /* NULL if absent */
void tr_ckpt_free(TrCkpt *c); /* frees what tr_ckpt_read made; a caller-filled c owns nothing */

/* ==== export.c: trained weights to the canonical packed file ==== */

/* A quantized weight's trained state, fp32, as the trainer holds it. */
typedef struct {
  const float *W;        /* (N, K) */
  const float *g;        /* (k, N) */
  const float *h;        /* (k, K) */
  const uint32_t *bits;  /* (k, N, words): the coupled signs of W, g, h; NULL = derived here (tr_derive_bits) */
} TrExportWeight;

/* Gives the state of the weight named base (N x K, k paths), or RB_EUSER with
 * a message when it has none. */
typedef int (*TrExportGetFn)(void *ctx, const char *base, int N, int K, int k, TrExportWeight *w, RbBuf *err);

typedef struct {
  const char *ir;        /* which linears are quantized, with what k */
  FeOptions fe;
  const char *weights;   /* the original full-precision safetensors: every other tensor is copied from it */
  const char *out;       /* the packed safetensors, written atomically */
  uint64_t step, tokens; /* recorded in __metadata__ */
  TrExportGetFn get;
  void *ctx;
} TrExportOptions;

/* Write o->out in the canonical packed format: for every IR-quantized weight,
 * <base>.bits as given (or derived) and g, h rebalanced per path (g c, h / c,
 * c = sqrt(max|h| / max|g|), 1 when either is all zero: the product is
 * unchanged) then rounded to f16; a scale that is not finite, exceeds 65504
 * or is nonzero but rounds to 0 in f16 is RB_EUSER naming the tensor, the path
 * and the value. Every other tensor of o->weights is copied byte for byte, in
 * its order. __metadata__: format, paths, rabit_ir_model, model (the input's),
 * trained_by "rabit train", step, tokens. The output is built in memory (the
 * safetensors writer copies) and written atomically. IR diagnostics go to err. */
int tr_export(const TrExportOptions *o, RbBuf *err);
/* Standard QAT's signs: bits (k, N, words) of B_p = sign(Wp[p]) for latents Wp (k, N, K), sign(0) = +1. */
void tr_sign_bits(const float *Wp, int N, int K, int k, uint32_t *bits);
/* tr_export from a checkpoint's latent, row_scale and col_scale tensors (the
 * bits re-derived from them). ir and weights NULL: the ones the checkpoint
 * records; fe may be NULL. A checkpoint whose model differs from the IR's is refused. */
int tr_export_from_checkpoint(const char *ir, const FeOptions *fe, const char *ckpt, const char *weights,
                              const char *out, RbBuf *err);

/* ==== curve.c: the loss curve as SVG ==== */

typedef struct {
  double x;    /* step or tokens */
  double loss;
} TrCurvePoint;

/* Write an SVG plot of the train and validation losses against x (log-scale
 * y, axes with ticks, labels, a legend) to path, atomically. Points whose
 * loss is not finite and positive are left out; either series may be empty.
 * xlabel names the axis ("step", "tokens"); title may be NULL. */
int tr_curve_svg(const char *path, const TrCurvePoint *train, int ntrain, const TrCurvePoint *val, int nval,
                 const char *title, const char *xlabel, RbBuf *err);
/* ==== eval.c: the held-out split and its evaluation (DESIGN.md; tr_eval_run on the GPU) ==== */

#define TR_EVAL_WINDOW 1024
#define TR_EVAL_SHARD "heldout.shard"         /* data/heldout.txt tokenized whole: the stream */
#define TR_EVAL_KJV_SHARD "heldout-kjv.shard" /* data/heldout-kjv.txt, its KJV part: the boundary */
#define TR_EVAL_SEAM_SLACK 8 /* tokens of the KJV part that may differ at the seam, merged with Austen's */

typedef enum { TR_EVAL_VALID, TR_EVAL_TEST, TR_EVAL_NSET } TrEvalSet; /* even windows, odd windows */
typedef enum { TR_EVAL_KJV, TR_EVAL_AUSTEN, TR_EVAL_MIXED, TR_EVAL_NSOURCE } TrEvalSource;

const char *tr_eval_set_name(TrEvalSet s);       /* "validation", "test" */
const char *tr_eval_source_name(TrEvalSource s); /* "kjv", "austen", "mixed" */

typedef struct {
  int index;       /* in the stream: even windows validate, odd ones test */
  uint64_t start;  /* its first token */
  TrEvalSet set;
  TrEvalSource source; /* KJV: all before the boundary; Austen: all from it on; mixed: spans it */
} TrEvalWindow;

/* The split of a stream of ntokens whose Austen part starts at token
 * boundary into floor(ntokens / window) windows, the tail dropped as rabit
 * ppl drops it; the first max_windows of them (0: all). *out is rb_malloc'ed.
 * RB_EUSER when not one window fits. */
int tr_eval_split(uint64_t ntokens, uint64_t boundary, int window, int max_windows, TrEvalWindow **out, int *n,
                  RbBuf *err);

typedef struct {
  int32_t *tokens;            /* heldout.txt tokenized whole (the stream earlier rabit ppl numbers used) */
  uint64_t ntokens, boundary; /* boundary: the first token not shared with the KJV part's own tokens */
  uint64_t kjv_tokens;        /* the KJV part tokenized alone; boundary < kjv_tokens when a pre-token spans the seam */
  uint32_t vocab;
  int window, nwindows;
  TrEvalWindow *w;
} TrEvalData;

/* Read DIR/heldout.shard (the stream) and DIR/heldout-kjv.shard (where the
 * KJV part ends), made by `rabit data prepare --split heldout --text
 * data/heldout.txt --text data/heldout-kjv.txt -o DIR`. Both are checked by
 * tr_shard_read and must be tagged held-out (a train shard is refused, named);
 * the KJV shard must be the stream's beginning but for its last
 * TR_EVAL_SEAM_SLACK tokens, and shorter than it. The boundary is where the two
 * first differ. Errors name the file. Free d with tr_eval_free either way. */
int tr_eval_open(const char *dir, int window, int max_windows, TrEvalData *d, RbBuf *err);
void tr_eval_free(TrEvalData *d);
/* The first index where ids (n) differs from d's stream over the windows
 * evaluated (ids shorter counts as a difference at n), or -1 when they agree. */
int64_t tr_eval_compare(const TrEvalData *d, const int32_t *ids, size_t n);

typedef struct {
  double nll;      /* summed over the predicted tokens */
  uint64_t tokens; /* predicted: window - 1 per window */
  int windows;
} TrEvalSum;

typedef struct {
  TrEvalSum by[TR_EVAL_NSET][TR_EVAL_NSOURCE];
  double *window_nll; /* mean NLL of each window of d (NAN where not run), rb_malloc'ed by tr_eval_run */
  int nwindows;
  double seconds;     /* tr_eval_run's wall time */
  uint64_t forwarded; /* tokens through the model */
} TrEvalResult;

/* Count window w's summed NLL over its predicted tokens in r. */
void tr_eval_add(TrEvalResult *r, const TrEvalWindow *w, double nll_sum, uint64_t predicted);
/* The sum over a set, of one source or of all (source < 0). */
TrEvalSum tr_eval_sum(const TrEvalResult *r, TrEvalSet set, int source);
/* exp(mean NLL); NAN for an empty sum. */
double tr_eval_ppl(TrEvalSum s);

typedef struct {
  unsigned sets; /* bit 1 << TrEvalSet per set to run; 0: both (the trainer validates with 1 << TR_EVAL_VALID) */
  void (*progress)(void *ctx, int done, int total, const TrEvalResult *r); /* after each window; may be NULL */
  void *ctx;
} TrEvalRunOptions;

/* Every window of d (of the chosen sets) through the model, its NLL on the
 * device (rt_model_nll), summed into r. m must take windows of d->window
 * (max_ctx >= window). Errors: the model's (rt_model_error) in err. Free r
 * with tr_eval_result_free either way. */
int tr_eval_run(RtModel *m, const TrEvalData *d, const TrEvalRunOptions *o, TrEvalResult *r, RbBuf *err);
void tr_eval_result_free(TrEvalResult *r);

/* ==== qat.c (continued): the trainer's own evaluation ==== */

/* The student's mean NLL per predicted token over the validation windows of
 * d (the first max_windows of them; 0: all), on the training forward, the
 * NLL on the device. The step must have been opened with eval_seq = d->window. */
int tr_step_eval(TrStep *s, const TrEvalData *d, int max_windows, double *mean_nll, int *windows, RbBuf *err);

#endif
