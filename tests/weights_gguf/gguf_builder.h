/* gguf_builder.h: GGUF files written byte by byte for the tests, independent
 * of the reader, plus the reference quantizers each test compares against. */
#ifndef RABIT_TEST_GGUF_BUILDER_H
#define RABIT_TEST_GGUF_BUILDER_H

#include <stddef.h>
#include <stdint.h>

#include "ir/base.h"

#define GB_MAX_TENSORS 512

typedef struct {
  char name[96];
  uint32_t type, ndims;
  uint64_t ne[4];
  const uint8_t *data; /* borrowed until gb_finish */
  size_t nbytes;
  uint64_t offset;     /* filled by gb_finish unless forced */
  int force_offset;
} GbTensor;

typedef struct {
  RbBuf kv;          /* the metadata entries, already encoded */
  uint64_t nkv;
  GbTensor t[GB_MAX_TENSORS];
  int nt;
  uint32_t version;  /* 3 unless changed */
  uint32_t alignment;/* used for the layout; written only via gb_u32(.., "general.alignment") */
} GbFile;

void gb_init(GbFile *f);
void gb_free(GbFile *f);
/* Raw little-endian writers over any buffer. */
void gb_put32(RbBuf *b, uint32_t v);
void gb_put64(RbBuf *b, uint64_t v);
void gb_putstr(RbBuf *b, const char *s);
/* Metadata entries. */
void gb_u8(GbFile *f, const char *k, uint8_t v);
void gb_i8(GbFile *f, const char *k, int8_t v);
void gb_u16(GbFile *f, const char *k, uint16_t v);
void gb_i16(GbFile *f, const char *k, int16_t v);
void gb_u32(GbFile *f, const char *k, uint32_t v);
void gb_i32(GbFile *f, const char *k, int32_t v);
void gb_f32(GbFile *f, const char *k, float v);
void gb_bool(GbFile *f, const char *k, int v);
void gb_str(GbFile *f, const char *k, const char *v);
void gb_u64(GbFile *f, const char *k, uint64_t v);
void gb_i64(GbFile *f, const char *k, int64_t v);
void gb_f64(GbFile *f, const char *k, double v);
void gb_arr_str(GbFile *f, const char *k, const char *const *v, int n);
void gb_arr_i32(GbFile *f, const char *k, const int32_t *v, int n);
void gb_arr_f32(GbFile *f, const char *k, const float *v, int n);
/* An entry with raw bytes after the key (type and value encoded by the caller). */
void gb_raw(GbFile *f, const char *k, const void *bytes, size_t n);
/* A tensor; ne in ggml order. Returns its index. */
int gb_tensor(GbFile *f, const char *name, uint32_t type, int ndims, const uint64_t *ne,
              const void *data, size_t nbytes);
/* The whole file image into out; *info_end gets the end of the tensor infos
 * and *data_start the data section's offset (either may be NULL). */
void gb_finish(GbFile *f, RbBuf *out, size_t *info_end, size_t *data_start);

/* ggml block sizes the builder knows (values per block, bytes per block). */
int gb_type_block(uint32_t type, size_t *block, size_t *bytes);

/* Reference quantizers: quantize n values of x (n a multiple of the block)
 * into out (gb_type_block bytes per block) and write the exact value each
 * element decodes to into expect. Written from ggml's documented block
 * layouts element by element, independently of the library's loops. */
void ref_quant(uint32_t type, const float *x, size_t n, uint8_t *out, float *expect);

/* Deterministic pseudo-random numbers for reproducible tests. */
uint64_t gb_rand(uint64_t *s);
float gb_randf(uint64_t *s); /* uniform in [-1, 1) */

#endif
