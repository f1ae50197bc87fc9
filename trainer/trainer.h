/* trainer.h: the trainer's internal header (prefix tr_). RaBiT QAT, its
 * initialization and the PTQ baseline live behind it, one section per file.
 * Everything here runs on the CPU unless a section says otherwise. */
#ifndef RABIT_TRAINER_H
#define RABIT_TRAINER_H

#include <stdint.h>

#include "frontend/frontend.h"
#include "ir/base.h"
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
#define TR_MAX_TEXT_BYTES (1ull << 30) /* a source text is read whole: 1 GiB at most */

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

#endif
