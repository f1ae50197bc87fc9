/* runtime.h: NVRTC compilation, the on-disk kernel cache, and the CUDA driver
 * API loaded with dlopen (prefix rt_). Nothing here links libcuda: the tools
 * compile and cache on machines with no GPU and say plainly when running needs one. */
#ifndef RABIT_RUNTIME_H
#define RABIT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/codegen.h"
#include "ir/base.h"

/* ==== cache.c: cubins on disk under an XXH3-128 key ==== */

#define RT_CACHE_FORMAT 1

typedef struct {
  uint64_t hi, lo;
} RtKey;

/* Everything that changes a binary. */
typedef struct {
  const char *source;       /* canonical kernel source */
  const char *options;      /* NVRTC options, joined by spaces */
  const char *arch;         /* exact target: "sm_90", "sm_90a" */
  const char *compiler_id;  /* rt_nvrtc_id(): NVRTC version + builtins identity */
  const char *tool_version; /* RABIT_VERSION */
} RtKeyParts;

RtKey rt_key_make(const RtKeyParts *p); /* also mixes in RT_CACHE_FORMAT */
void rt_key_hex(RtKey k, char out[33]);

typedef struct RtCache RtCache;

typedef struct {
  uint64_t entries, bytes, max_bytes;
  const char *dir; /* NULL when memory-only */
} RtCacheStats;

#define RT_CACHE_DEFAULT_MAX (1ull << 30)

/* Open the cache in dir, or when dir is NULL in $RABIT_CACHE_DIR, else
 * $XDG_CACHE_HOME/rabit, else ~/.cache/rabit (created with mode 0700).
 * If the directory cannot be created or written, the cache lives in memory
 * for this process and a warning naming the directory and the reason is
 * appended to warn. Returns RB_OK, or RB_EINTERNAL on allocation failure. */
int rt_cache_open(RtCache **out, const char *dir, uint64_t max_bytes, RbBuf *warn);
void rt_cache_close(RtCache *c);

/* Look a key up. Returns 1 on a hit with *data (rb_malloc'ed) and *len set,
 * 0 on a miss. An entry with a bad magic, version, key, length or checksum is
 * a miss: it is removed, never loaded. A hit refreshes the entry's LRU time. */
int rt_cache_get(RtCache *c, RtKey key, void **data, size_t *len);

/* Store an entry: temp file in the same directory, fsync, rename, fsync of the
 * directory; then evict least-recently-used entries beyond max_bytes.
 * Returns RB_OK or RB_EINTERNAL (with the reason appended to err if non-NULL);
 * a failed put leaves no partial entry. */
int rt_cache_put(RtCache *c, RtKey key, const void *data, size_t len, RbBuf *err);

/* Get-or-build under a per-key lock file, so that concurrent processes
 * compile one kernel once. build() fills *data and *len (rb_malloc'ed) and
 * returns RB_OK, or an error code that is passed back. *hit says whether the
 * entry came from the cache. */
typedef int (*RtBuildFn)(void *ctx, void **data, size_t *len);
int rt_cache_fetch(RtCache *c, RtKey key, RtBuildFn build, void *ctx, void **data, size_t *len,
                   int *hit, RbBuf *err);

int rt_cache_stats(RtCache *c, RtCacheStats *st);
int rt_cache_clear(RtCache *c); /* removes every entry and lock file */

/* ==== nvrtc.c: run-time compilation ==== */

/* Compile source for arch ("sm_90") into a cubin (nvrtcGetCUBIN, never PTX).
 * name is the program name NVRTC puts in its messages. opts are extra NVRTC
 * options. On failure returns RB_EUSER with the NVRTC log appended to log. */
int rt_nvrtc_compile(const char *source, const char *name, const char *arch,
                     const char *const *opts, int nopts, void **cubin, size_t *len, RbBuf *log);

/* "nvrtc 13.0 builtins <hex digest of libnvrtc-builtins>", computed once.
 * nvrtcVersion gives only major.minor, so the builtins library's contents
 * identify the exact compiler. */
const char *rt_nvrtc_id(void);

/* The NVRTC options every kernel is compiled with, in a fixed order. */
extern const char *const rt_nvrtc_default_opts[];
extern const int rt_nvrtc_default_nopts;

/* ==== build.c: a model's kernels compiled in parallel through the cache ==== */

typedef struct {
  const char *arch; /* exact target, "sm_90" */
  RtCache *cache;
  int jobs;         /* worker threads; 0 = the online CPUs */
} RtBuildOptions;

typedef struct {
  char entry[64];
  RtKey key;
  int hit;     /* the cubin came from the cache */
  double ms;   /* wall time to obtain it: compile, or load from the cache */
  void *cubin; /* rb_malloc'ed */
  size_t len;
  int rc;      /* RB_OK, RB_EUSER (the spec or NVRTC rejected it), RB_EINTERNAL */
  RbBuf source;/* the canonical source */
  RbBuf log;   /* NVRTC's log on failure, and cache warnings */
} RtBuilt;

/* Emit, key, and fetch-or-compile each of the n specs, spreading them over
 * worker threads. out[i] describes specs[i]. Returns RB_OK when all of them
 * built, else the worst rc; every out[i] is filled either way. */
int rt_build_kernels(const CgSpec *specs, int n, const RtBuildOptions *o, RtBuilt *out);
void rt_built_free(RtBuilt *b, int n);
/* The same for every kernel of a set: *built (rb_malloc'ed, ks->n entries,
 * free with rt_built_free and rb_free) describes ks->k[i]. */
int rt_build_kernel_set(const CgKernelSet *ks, const RtBuildOptions *o, RtBuilt **built);

/* The options string that goes into the key: the default NVRTC options, then
 * any from $RABIT_NVRTC_OPTIONS (read once per process), joined. */
const char *rt_build_options_string(void);

/* ==== plan.c: the versioned plan, the contract between rabitc and its users ==== */

struct IrGraph;

#define RT_PLAN_VERSION 1

typedef struct {
  CgSpec spec;
  RtKey key;
  char entry[64];
  unsigned block[3], smem;
  char tuning[32];     /* where its tile parameters came from: "default" until autotuned */
} RtPlanKernel;

#define RT_PLAN_MAX_STEP_KERNELS 4
#define RT_PLAN_MAX_VALUES 4

/* One op of the fused graph: which kernels serve it, the weights it binds,
 * the values it reads and writes. */
typedef struct {
  char op[16];
  int line, layer;
  int nkernels, kernel[RT_PLAN_MAX_STEP_KERNELS]; /* linears: xor, mma<=16, mma<=512, repack */
  int nin, in[RT_PLAN_MAX_VALUES], nout, out[RT_PLAN_MAX_VALUES];
  int width[RT_PLAN_MAX_VALUES]; /* each output's row width (T is dynamic) */
  int paths;            /* 0 = none */
  int tied;             /* a dense linear reusing the embedding named in weights[0] */
  int nweights;
  char *weights[RT_PLAN_MAX_VALUES];
  size_t layout_bytes; /* linears: the repacked bits, one layout for every kernel */
} RtPlanStep;

typedef struct RtPlan {
  int version;
  char model[128], arch[16], compiler[128], tool[32];
  RtKey ir_hash;
  int nkernels, nsteps, nvalues;
  int ret;        /* the returned value */
  int ret_f32;    /* returned as f32 (logits) rather than f16 */
  RtPlanKernel *kernels;
  RtPlanStep *steps;
} RtPlan;

/* Write the plan of a verified, fused graph whose kernels were built
 * (built[i] serves ks->k[i]). The IR text's hash identifies the source.
 * Written to a temp file and renamed, so a failed write leaves any old plan. */
int rt_plan_write(const char *path, const struct IrGraph *g, const char *ir_text, const char *arch,
                  const CgKernelSet *ks, const RtBuilt *built, RbBuf *err);
/* Render a plan as text (what rt_plan_write writes). */
void rt_plan_format(const RtPlan *p, RbBuf *out);
/* Build the in-memory plan without writing it. */
int rt_plan_make(RtPlan **out, const struct IrGraph *g, const char *ir_text, const char *arch,
                 const CgKernelSet *ks, const RtBuilt *built);
/* The whole back end for a verified, fused graph: select its kernels,
 * fetch or compile each through the cache (in parallel), and make the plan
 * for arch. Kernel failures are appended to err. *nkernels and *hits
 * (either may be NULL) count the kernels and those the cache held. */
int rt_plan_compile(const struct IrGraph *g, const char *ir_text, const char *arch, int max_ctx, RtPlan **out,
                    int *nkernels, int *hits, RbBuf *err);
/* Load and validate a plan file; errors name the file and line. */
int rt_plan_load(const char *path, RtPlan **out, RbBuf *err);
int rt_plan_parse(const char *path, const char *text, RtPlan **out, RbBuf *err);
void rt_plan_free(RtPlan *p);

/* ==== cuda.c: the driver API, through dlopen("libcuda.so.1") + cuGetProcAddress ==== */

typedef struct RtGpu RtGpu;
typedef struct RtModule RtModule;
typedef void *RtFunction; /* CUfunction */
typedef void *RtStream;   /* CUstream; NULL is the default stream */
typedef uint64_t RtDevPtr;/* CUdeviceptr */

/* Open device ordinal on its primary context. With no driver or no device it
 * returns RB_EUSER and appends to err a message that says running needs an
 * NVIDIA GPU and driver, with the loader's reason. */
int rt_gpu_open(RtGpu **out, int ordinal, RbBuf *err);
void rt_gpu_close(RtGpu *g);
const char *rt_gpu_name(const RtGpu *g);
const char *rt_gpu_arch(const RtGpu *g); /* "sm_90" */
int rt_gpu_sm_count(const RtGpu *g);

/* Every failing driver call is reported on stderr as
 * "file:line: CUDA error NAME (code) in `statement` on device N (name)". */
int rt_module_load(RtGpu *g, const void *cubin, size_t len, RtModule **out);
int rt_module_function(RtModule *m, const char *name, RtFunction *fn);
void rt_module_unload(RtModule *m);

int rt_mem_alloc(RtGpu *g, RtDevPtr *p, size_t bytes);
void rt_mem_free(RtGpu *g, RtDevPtr p);
int rt_memcpy_htod(RtGpu *g, RtDevPtr dst, const void *src, size_t bytes);
int rt_memcpy_dtoh(RtGpu *g, void *dst, RtDevPtr src, size_t bytes);
int rt_memset8(RtGpu *g, RtDevPtr dst, unsigned char v, size_t bytes);
/* Ordered on stream s (capturable). */
int rt_memcpy_dtod(RtGpu *g, RtDevPtr dst, RtDevPtr src, size_t bytes, RtStream s);

/* args: an array of pointers to each kernel argument, as cuLaunchKernel wants. */
int rt_launch(RtGpu *g, RtFunction fn, const unsigned grid[3], const unsigned block[3],
              unsigned smem, RtStream stream, void **args);
int rt_sync(RtGpu *g);

int rt_stream_create(RtGpu *g, RtStream *s);
void rt_stream_destroy(RtGpu *g, RtStream s);

/* Timing: capture a sequence of launches on stream s into a graph, replay it,
 * and time the replays with events. */
typedef struct RtGraph RtGraph;
int rt_capture_begin(RtGpu *g, RtStream s);
int rt_capture_end(RtGpu *g, RtStream s, RtGraph **out);
int rt_graph_launch(RtGpu *g, RtGraph *gr, RtStream s);
void rt_graph_destroy(RtGpu *g, RtGraph *gr);
int rt_time_graph(RtGpu *g, RtGraph *gr, RtStream s, int reps, float *median_ms);

/* ==== safetensors.c: the canonical weight files ==== */

typedef enum { RT_F32, RT_F16, RT_BF16, RT_I32, RT_I64, RT_U8, RT_I8, RT_NDTYPE } RtDtype;

const char *rt_dtype_name(RtDtype t); /* safetensors spelling: "F32", "F16", "BF16", "I32", ... */
size_t rt_dtype_size(RtDtype t);

#define RT_MAX_DIMS 4

typedef struct {
  const char *name;
  RtDtype dtype;
  int rank;
  int64_t shape[RT_MAX_DIMS];
  uint64_t nbytes;
  const void *data; /* into the mapped file */
} RtTensor;

typedef struct RtSafetensors RtSafetensors;

/* Map and validate a .safetensors file: header length, JSON (parsed with
 * cJSON), dtypes, shapes, offsets in bounds, sizes = product of the shape,
 * no overlaps. Errors name the file and the tensor. */
int rt_st_open(const char *path, RtSafetensors **out, RbBuf *err);
/* The same checks on a file image in memory (data must outlive st; name
 * labels the messages). For the fuzz harness and embedded test files. */
int rt_st_open_memory(const void *data, size_t size, const char *name, RtSafetensors **out, RbBuf *err);
void rt_st_close(RtSafetensors *st);
int rt_st_count(const RtSafetensors *st);
const RtTensor *rt_st_tensor(const RtSafetensors *st, int i);
const RtTensor *rt_st_find(const RtSafetensors *st, const char *name); /* NULL if absent */
const char *rt_st_meta(const RtSafetensors *st, const char *key);     /* __metadata__ string values */

/* Writer: tensors are added (data copied), then written at once to a temp
 * file that is renamed into place (a failed write leaves no partial file). */
typedef struct RtStWriter RtStWriter;
int rt_st_writer_new(RtStWriter **out);
int rt_st_writer_add(RtStWriter *w, const char *name, RtDtype dt, int rank, const int64_t *shape,
                     const void *data);
int rt_st_writer_meta(RtStWriter *w, const char *key, const char *value);
int rt_st_writer_finish(RtStWriter *w, const char *path, RbBuf *err); /* frees w */
void rt_st_writer_free(RtStWriter *w);

/* ==== gguf.c: llama.cpp model files ==== */

typedef struct RtGguf RtGguf;

/* GGML tensor types that rt_gguf_dequant understands (ggml's numbering). */
enum {
  RT_GGML_F32 = 0, RT_GGML_F16 = 1, RT_GGML_Q4_0 = 2, RT_GGML_Q4_1 = 3,
  RT_GGML_Q8_0 = 8, RT_GGML_Q4_K = 12, RT_GGML_Q6_K = 14
};

/* GGUF metadata value types (gguf_type in llama.cpp). */
enum {
  RT_GGUF_U8 = 0, RT_GGUF_I8, RT_GGUF_U16, RT_GGUF_I16, RT_GGUF_U32, RT_GGUF_I32, RT_GGUF_F32,
  RT_GGUF_BOOL, RT_GGUF_STRING, RT_GGUF_ARRAY, RT_GGUF_U64, RT_GGUF_I64, RT_GGUF_F64
};

typedef struct {
  const char *name;
  int ggml_type;  /* GGML_TYPE_*: 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0, 12 Q4_K, 14 Q6_K */
  int rank;
  int64_t ne[RT_MAX_DIMS]; /* ggml order: ne[0] is the fastest-varying (columns); unused dims 1 */
  uint64_t nbytes;
  const void *data;
  const char *file; /* the file it came from, for error messages */
} RtGgufTensor;

/* Map and validate a GGUF v3 (or v2) file: magic, version, counts, every
 * metadata value and tensor info bounds-checked, alignment, ne[0] a multiple
 * of the type's block, data in bounds. Errors ("path: error: ...") name the
 * file and the key or tensor; RB_EUSER for a bad file, RB_EINTERNAL for OOM. */
int rt_gguf_open(const char *path, RtGguf **out, RbBuf *err);
/* The same over bytes in memory (fuzzing, tests). data must outlive the
 * handle; name is used in messages. */
int rt_gguf_open_memory(const void *data, size_t size, const char *name, RtGguf **out, RbBuf *err);
void rt_gguf_close(RtGguf *g);
int rt_gguf_version(const RtGguf *g);
int rt_gguf_count(const RtGguf *g);
const RtGgufTensor *rt_gguf_tensor(const RtGguf *g, int i);
const RtGgufTensor *rt_gguf_find(const RtGguf *g, const char *name);
/* Metadata keys in file order; *type (may be NULL) gets the RT_GGUF_* type. */
int rt_gguf_kv_count(const RtGguf *g);
const char *rt_gguf_kv_key(const RtGguf *g, int i, int *type);
/* Metadata: each returns 1 and sets *out when the key exists with a compatible type. */
int rt_gguf_u64(const RtGguf *g, const char *key, uint64_t *out); /* any integer type or bool, >= 0 */
int rt_gguf_f64(const RtGguf *g, const char *key, double *out);   /* any float or integer */
/* Strings are NUL-terminated copies (len excludes the NUL) valid until close. */
int rt_gguf_str(const RtGguf *g, const char *key, const char **out, size_t *len);
/* Arrays: element count and type; strings by index. Nested arrays report
 * elem_type RT_GGUF_ARRAY; their elements are validated but not accessible. */
int rt_gguf_arr(const RtGguf *g, const char *key, int *elem_type, uint64_t *count);
int rt_gguf_arr_str(const RtGguf *g, const char *key, uint64_t i, const char **out, size_t *len);
int rt_gguf_arr_i64(const RtGguf *g, const char *key, uint64_t i, int64_t *out);
int rt_gguf_arr_f64(const RtGguf *g, const char *key, uint64_t i, double *out);
/* "F32", "Q4_K", ...; "type N" for numbers it does not know. */
const char *rt_ggml_type_name(int ggml_type);
/* Dequantize a tensor to float32 (ne[0]*ne[1]*... values, row-major with ne[0] fastest).
 * RB_EUSER with a message naming the file and tensor for unsupported types. */
int rt_gguf_dequant(const RtGgufTensor *t, float *out, RbBuf *err);
/* Undo llama.cpp's convert_hf_to_gguf permute() of Q/K rows in place: w is
 * rows x cols row-major (HF [N, K]) in GGUF row order, n_head the heads the
 * converter used (n_head for Q, n_head_kv for K). GGUF row h*hd + 2i + s holds
 * HF row h*hd + s*hd/2 + i. RB_EUSER if rows is not n_head * an even head dim. */
int rt_gguf_unpermute_rows(float *w, int64_t rows, int64_t cols, int n_head, RbBuf *err);

/* ==== tokenizer.c: byte-level BPE (GPT-2 style, as in SmolLM2's GGUF) ==== */

/* Encodes exactly as Hugging Face `tokenizers` does for the model: added
 * (special) tokens are cut out first, the rest is pre-split with the model's
 * regex (PCRE2), mapped through GPT-2's bytes-to-unicode table and merged by
 * rank per pre-token. A tokenizer is immutable once built: encode and decode
 * may run on several threads at once. */
typedef struct RtTokenizer RtTokenizer;

/* The raw vocabulary, as GGUF stores it. Strings need not be NUL-terminated;
 * everything is copied, so the arrays may be freed after rt_tok_create. */
typedef struct {
  const char *model;       /* tokenizer.ggml.model: must be "gpt2" */
  const char *pre;         /* tokenizer.ggml.pre: "smollm", "gpt2", ...; NULL = "default" */
  int ntokens;
  const char *const *tokens;
  const size_t *token_lens;
  const int32_t *token_types; /* GGUF token types (1 normal, 3 control, 4 user-defined); NULL = all normal */
  int nmerges;
  const char *const *merges;  /* "left right", in rank order */
  const size_t *merge_lens;
  int bos, eos;               /* -1 when the model has none */
} RtTokVocab;

/* Build a tokenizer from arrays. Errors (RB_EUSER: unknown model or
 * pre-tokenizer, a merge naming no token, a token with a NUL byte) are
 * appended to err; RB_EINTERNAL on allocation failure. */
int rt_tok_create(const RtTokVocab *v, RtTokenizer **out, RbBuf *err);
/* From the GGUF metadata: tokenizer.ggml.model, .tokens, .merges (required),
 * .token_type, .pre, .bos_token_id, .eos_token_id (optional). A missing or
 * mistyped key is RB_EUSER naming the key. */
int rt_tok_from_gguf(const RtGguf *g, RtTokenizer **out, RbBuf *err);
/* From the compact text vocabulary tests/tokenizer/make_reference.py writes
 * (format documented there). Errors are "path:line: message". */
int rt_tok_load_vocab(const char *path, RtTokenizer **out, RbBuf *err);
/* Write a GGUF's tokenizer as a vocabulary file rt_tok_load_vocab reads
 * (`rabit import` puts one beside the weights as tokenizer.txt). */
int rt_tok_save_vocab(const RtGguf *g, const char *path, RbBuf *err);
void rt_tok_free(RtTokenizer *t);
int rt_tok_vocab(const RtTokenizer *t);
int rt_tok_bos(const RtTokenizer *t); /* -1 when none */
int rt_tok_eos(const RtTokenizer *t); /* -1 when none */
/* The id of a token by its stored text ("<|im_end|>", "Ġthe"), or -1. */
int rt_tok_find(const RtTokenizer *t, const char *piece);
/* A token's stored text (byte-level form, NUL-terminated), or NULL when id is out of range. */
const char *rt_tok_piece(const RtTokenizer *t, int id, size_t *len);
/* Encode UTF-8 text (no BOS added); *ids is rb_malloc'ed and non-NULL on
 * RB_OK, even when *n is 0. Invalid UTF-8 is not an error: bytes the regex
 * cannot read become pre-tokens of their own and are encoded as bytes. Like
 * HF, a byte whose symbol is not in the vocabulary is dropped.
 * RB_EINTERNAL on allocation or regex-engine failure. */
int rt_tok_encode(const RtTokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n);
/* Decode ids to bytes appended to out, token by token, so that a UTF-8
 * character split over two calls comes out whole once both are appended.
 * RB_EUSER (and nothing appended) if an id is out of range. */
int rt_tok_decode(const RtTokenizer *t, const int32_t *ids, size_t n, RbBuf *out);
/* The Instruct model's chat template (ChatML with SmolLM2's default system
 * prompt) around one user message, appended to out as text, ending with the
 * assistant header. Special-token text in user is not escaped, as with HF's
 * apply_chat_template. RB_EUSER when the vocabulary lacks <|im_start|>/<|im_end|>. */
int rt_tok_chat_prompt(const RtTokenizer *t, const char *user, RbBuf *out);

/* ==== blas.c: cuBLAS through dlopen, for dense (unquantized, fp16) linears ==== */

typedef struct RtBlas RtBlas;

/* Load libcublas on g's primary context, bound to stream s, with a fixed
 * workspace so that GEMMs can be captured in a graph. */
int rt_blas_open(RtGpu *g, RtStream s, RtBlas **out, RbBuf *err);
void rt_blas_close(RtBlas *b);
/* y (M, ldy) = x (M, K) W^T [+ y when accumulate], W (N, K) row-major fp16;
 * fp32 accumulation; y fp16, or fp32 when y_f32. */
int rt_blas_linear(RtBlas *b, int M, int N, int K, RtDevPtr x, RtDevPtr w, RtDevPtr y, int ldy,
                   int y_f32, int accumulate);

/* ==== sample.c: choosing the next token ==== */

typedef struct RtSampler RtSampler;

/* temp <= 0 is greedy (argmax). Otherwise softmax(logits / temp), kept to the
 * top_k most likely tokens (0: all), then to the smallest most-likely set that
 * holds top_p of their mass, sampled with a generator seeded by seed. */
RtSampler *rt_sampler_new(int vocab, float temp, int top_k, float top_p, uint64_t seed);
void rt_sampler_free(RtSampler *s);
int rt_sample(RtSampler *s, const float *logits);

struct RabitSession;

/* ==== model.c: the executor: a plan's steps over weights, with a KV cache ==== */

typedef struct {
  int max_tokens; /* rows per forward call (the prefill chunk); 0 = 512 */
  int random;     /* random weights of the plan's shapes instead of a file */
  uint64_t seed;
} RtModelOptions;

typedef struct RtModel RtModel;

/* Bind the weights of the session's plan from a safetensors file (the
 * canonical packed format for quantized linears, fp16/f32 for the rest, as
 * `rabit import` and `rabit quantize` write), allocate activations and KV
 * caches. Errors name the file and the tensor. */
int rt_model_open(struct RabitSession *s, const char *weights, const RtModelOptions *o, RtModel **out,
                  RbBuf *err);
void rt_model_close(RtModel *m);
int rt_model_vocab(const RtModel *m);
int rt_model_max_ctx(const RtModel *m);
int rt_model_max_tokens(const RtModel *m);
size_t rt_model_weight_bytes(const RtModel *m); /* device memory held by weights */
size_t rt_model_total_bytes(const RtModel *m);  /* weights + activations + KV caches */
/* Run tokens[0..T) at positions pos0..pos0+T-1 (T <= max_tokens, pos0+T <= max_ctx);
 * the cache keeps positions < pos0 from earlier calls. */
int rt_model_forward(RtModel *m, const int32_t *tokens, int T, int pos0);
/* One token at position pos through a CUDA graph captured on first use. */
int rt_model_decode(RtModel *m, int32_t token, int pos);
/* Replay the last decode step n more times, back to back (for timing). */
int rt_model_decode_replay(RtModel *m, int n);
/* Copy rows [row0, row0+n) of the last call's output (the logits) as f32. */
int rt_model_logits(RtModel *m, int row0, int n, float *out);
int rt_model_sync(RtModel *m);

/* ==== session.c (the public API of rabit.h) ==== */

/* The session's GPU, for tests and benchmarks that time graphs of launches. */
RtGpu *rt_session_gpu(struct RabitSession *s);
/* What opening took: getting every cubin (cache or NVRTC), loading every module. */
void rt_session_times(const struct RabitSession *s, double *ms_build, double *ms_load);
const RtPlan *rt_session_plan(const struct RabitSession *s);
/* Launch plan kernel `kernel` with its ABI arguments on stream st. */
int rt_session_launch(struct RabitSession *s, int kernel, int n, void **args, RtStream st);
/* Open a session on an in-memory plan (borrowed: it must outlive the session). */
int rt_session_open_plan(const RtPlan *plan, int device, struct RabitSession **out, RbBuf *err);

#endif
