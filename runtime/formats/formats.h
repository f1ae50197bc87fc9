/* formats.h: weight files (prefix rt_): safetensors read and write, GGUF read
 * with dequantization, and the GGUF -> safetensors import. Every reader
 * validates untrusted bytes and names the file and the tensor in its errors. */
#ifndef RABIT_RUNTIME_FORMATS_H
#define RABIT_RUNTIME_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "ir/base.h"

/* ==== safetensors.c: the canonical weight files ==== */

/* F64 is last so that the older values keep their numbers; the trainer's gradient checks read it. */
typedef enum { RT_F32, RT_F16, RT_BF16, RT_I32, RT_I64, RT_U8, RT_I8, RT_F64, RT_NDTYPE } RtDtype;

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
/* Element i of a float tensor (F32, F16 or BF16) as float; offsets need not be aligned. */
float rt_tensor_f32(const RtTensor *t, size_t i);
/* Its elements: the product of its shape. */
size_t rt_tensor_count(const RtTensor *t);
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
 * of the type's block, data in bounds, no two tensors sharing a byte. Errors ("path: error: ...") name the
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

/* ==== import.c: a llama.cpp GGUF Llama as Hugging Face safetensors ==== */

/* The model as the GGUF metadata describes it: what config.json says. */
typedef struct {
  const char *name; /* general.name, else the GGUF path's base name (points into either) */
  int gguf_version;
  uint64_t layers, dim, ffn, heads, kv_heads, head_dim, vocab, ctx;
  double eps, theta; /* rms_norm_eps, rope_theta */
  int has_bos, has_eos, has_pad;
  uint64_t bos, eos, pad;
  int tied; /* no output.weight: lm_head is the embedding (tie_word_embeddings) */
} RtImportModel;

typedef enum { RT_IMPORT_BEGIN, RT_IMPORT_EMBEDDINGS, RT_IMPORT_LAYER, RT_IMPORT_FINAL } RtImportStage;

/* A progress report: BEGIN once the model is read and the directory made,
 * then one after the embeddings, after each layer, after the final norm
 * (and lm_head). */
typedef struct {
  RtImportStage stage;
  int layer;                  /* RT_IMPORT_LAYER: the layer just written, from 0 */
  int ntensors;               /* tensors the stage wrote */
  const char *types;          /* their distinct GGUF types, "Q4_K,Q6_K"; "" at BEGIN */
  const RtImportModel *model;
} RtImportProgress;

typedef struct {
  const char *gguf;   /* the input file */
  const char *outdir; /* created if missing */
  int force;          /* replace model.safetensors and config.json; without it either
                         one existing is RB_EUSER before any work */
  void (*progress)(void *ctx, const RtImportProgress *p); /* NULL: no reports */
  void *ctx;
} RtImportOptions;

typedef struct {
  RtImportModel model;
  int ntensors;       /* tensors written */
  uint64_t bytes;     /* their data bytes */
  int64_t ntokens;    /* entries of tokenizer.ggml.tokens; -1 when the GGUF has no tokenizer */
  char safetensors[4096], config[4096]; /* the paths written */
  RtGguf *gguf;       /* the input, still open, for exports of other layers (the tokenizer) */
} RtImportResult;

/* Convert o->gguf to o->outdir/model.safetensors (HF Llama names, F16
 * matrices, F32 norms, Q/K rows un-permuted to rotate-half RoPE) and
 * o->outdir/config.json, both written atomically. Every GGUF tensor must map
 * to an HF one, and each special token id (bos, eos, padding, unknown) the
 * GGUF names must lie in the vocabulary: one outside it is refused, naming
 * the key and the value, never written or dropped. Errors (RB_EUSER bad input or output, RB_EINTERNAL out of
 * memory) are appended to err; on failure *res is all zero and holds
 * nothing. On RB_OK the caller ends with rt_import_result_free (safe on a
 * failed result too). Nothing is printed: progress goes to o->progress. */
int rt_import_gguf(const RtImportOptions *o, RtImportResult *res, RbBuf *err);
void rt_import_result_free(RtImportResult *res);

#endif
