/* test_gguf: the GGUF reader on files built byte by byte here: a good file
 * with every metadata type and every tensor type (round trip and dequant
 * against reference quantizers), corrupted files (each a clear error that
 * names the file and the key or tensor), truncation at every byte, and the
 * Q/K un-permutation against an independent permutation and RoPE.
 * usage: test_gguf CASE [DIR]   (CASE write_corpus DIR writes fuzz seeds) */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "runtime/formats/formats.h"
#include "tests/weights_gguf/gguf_builder.h"

static int failures;

#define CHECK(c)                                                                \
  do {                                                                          \
    if (!(c)) {                                                                 \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);     \
      failures++;                                                               \
    }                                                                           \
  } while (0)

/* ---- the good file ---- */

static const uint32_t all_types[] = {0, 1, 2, 3, 8, 12, 14};
enum { N_TYPES = sizeof all_types / sizeof all_types[0] };

typedef struct {
  uint64_t ne[4];
  int nd;
  uint8_t *q;
  float *x, *expect;
  size_t n, nbytes;
} RefTensor;

/* Random values with a per-row scale, so blocks differ in range. */
static void ref_tensor(RefTensor *r, uint32_t type, int nd, const uint64_t *ne, uint64_t *seed) {
  size_t block, bytes;
  gb_type_block(type, &block, &bytes);
  memset(r, 0, sizeof *r);
  r->nd = nd;
  r->n = 1;
  for (int i = 0; i < 4; i++) {
    r->ne[i] = i < nd ? ne[i] : 1;
    r->n *= r->ne[i];
  }
  r->nbytes = r->n / block * bytes;
  r->x = malloc(r->n * sizeof(float));
  r->expect = malloc(r->n * sizeof(float));
  r->q = malloc(r->nbytes);
  for (size_t i = 0; i < r->n; i++) {
    float row_scale = 0.05f + 0.1f * (float)((i / r->ne[0]) % 7);
    r->x[i] = gb_randf(seed) * row_scale;
  }
  ref_quant(type, r->x, r->n, r->q, r->expect);
}

static void ref_free(RefTensor *r) {
  free(r->q);
  free(r->x);
  free(r->expect);
}

static const char *const words[] = {"<|endoftext|>", "hello", "", "w\xc3\xb6rld", "a b"};

/* Every metadata type, arrays of strings and numbers, a nested array, and
 * one tensor of each ggml type (plus a 3-D one); alignment 32 or 64. */
static void build_good(GbFile *f, RefTensor *refs, uint32_t align, uint64_t *seed) {
  gb_init(f);
  gb_str(f, "general.architecture", "llama");
  if (align != 32) {
    gb_u32(f, "general.alignment", align);
    f->alignment = align;
  }
  gb_u8(f, "t.u8", 200);
  gb_i8(f, "t.i8", -100);
  gb_u16(f, "t.u16", 60000);
  gb_i16(f, "t.i16", -30000);
  gb_u32(f, "t.u32", 4000000000u);
  gb_i32(f, "t.i32", -2000000000);
  gb_f32(f, "t.f32", 1e-5f);
  gb_bool(f, "t.bool", 1);
  gb_str(f, "t.str", "Smol \"quoted\"");
  gb_u64(f, "t.u64", 0xfedcba9876543210ull);
  gb_i64(f, "t.i64", -1234567890123ll);
  gb_f64(f, "t.f64", 100000.0);
  gb_arr_str(f, "t.arr_str", words, 5);
  int32_t iv[4] = {3, -1, 0, 2147483647};
  gb_arr_i32(f, "t.arr_i32", iv, 4);
  float fv[3] = {0.5f, -2.0f, 3.25f};
  gb_arr_f32(f, "t.arr_f32", fv, 3);
  gb_arr_str(f, "t.arr_empty", NULL, 0);
  /* [[1, 2], [7]] as uint8 arrays inside an array */
  RbBuf raw = {0};
  gb_put32(&raw, 9);
  gb_put32(&raw, 9);
  gb_put64(&raw, 2);
  gb_put32(&raw, 0);
  gb_put64(&raw, 2);
  rb_buf_put(&raw, "\x01\x02", 2);
  gb_put32(&raw, 0);
  gb_put64(&raw, 1);
  rb_buf_put(&raw, "\x07", 1);
  gb_raw(f, "t.nested", raw.data, raw.len);
  rb_buf_free(&raw);
  for (int i = 0; i < N_TYPES; i++) {
    size_t block, bytes;
    gb_type_block(all_types[i], &block, &bytes);
    uint64_t ne[2] = {block == 256 ? 512 : 64, 3};
    ref_tensor(&refs[i], all_types[i], 2, ne, seed);
    char name[64];
    snprintf(name, sizeof name, "w.%s", rt_ggml_type_name((int)all_types[i]));
    gb_tensor(f, name, all_types[i], 2, refs[i].ne, refs[i].q, refs[i].nbytes);
  }
  uint64_t ne3[3] = {32, 2, 3};
  ref_tensor(&refs[N_TYPES], 8, 3, ne3, seed);
  gb_tensor(f, "blk.0.three_d", 8, 3, refs[N_TYPES].ne, refs[N_TYPES].q, refs[N_TYPES].nbytes);
}

/* Tolerance of the library against the reference's exact decoded values:
 * the same float operations, so only rounding-order noise is allowed. */
static int close_to(float got, float want, float scale) {
  return fabsf(got - want) <= 1e-6f * scale + 1e-30f;
}

static void check_good(const RtGguf *g, RefTensor *refs) {
  uint64_t u;
  double d;
  int64_t i64;
  const char *s;
  size_t len;
  int et;
  CHECK(rt_gguf_u64(g, "t.u8", &u) && u == 200);
  CHECK(rt_gguf_u64(g, "t.u16", &u) && u == 60000);
  CHECK(rt_gguf_u64(g, "t.u32", &u) && u == 4000000000u);
  CHECK(rt_gguf_u64(g, "t.u64", &u) && u == 0xfedcba9876543210ull);
  CHECK(rt_gguf_u64(g, "t.bool", &u) && u == 1);
  CHECK(!rt_gguf_u64(g, "t.i8", &u));  /* negative: not a u64 */
  CHECK(!rt_gguf_u64(g, "t.f32", &u)); /* float: not an integer */
  CHECK(!rt_gguf_u64(g, "t.str", &u));
  CHECK(!rt_gguf_u64(g, "missing", &u));
  CHECK(rt_gguf_f64(g, "t.i8", &d) && d == -100);
  CHECK(rt_gguf_f64(g, "t.i16", &d) && d == -30000);
  CHECK(rt_gguf_f64(g, "t.i32", &d) && d == -2000000000);
  CHECK(rt_gguf_f64(g, "t.i64", &d) && d == -1234567890123.0);
  CHECK(rt_gguf_f64(g, "t.f32", &d) && (float)d == 1e-5f);
  CHECK(rt_gguf_f64(g, "t.f64", &d) && d == 100000.0);
  CHECK(!rt_gguf_f64(g, "t.arr_f32", &d));
  CHECK(rt_gguf_str(g, "t.str", &s, &len) && len == 13 && !strcmp(s, "Smol \"quoted\""));
  CHECK(rt_gguf_str(g, "general.architecture", &s, NULL) && !strcmp(s, "llama"));
  CHECK(!rt_gguf_str(g, "t.u8", &s, &len));
  CHECK(rt_gguf_arr(g, "t.arr_str", &et, &u) && et == RT_GGUF_STRING && u == 5);
  for (int i = 0; i < 5; i++)
    CHECK(rt_gguf_arr_str(g, "t.arr_str", (uint64_t)i, &s, &len) && len == strlen(words[i]) &&
          !strcmp(s, words[i]));
  CHECK(!rt_gguf_arr_str(g, "t.arr_str", 5, &s, &len));
  CHECK(!rt_gguf_arr_str(g, "t.arr_i32", 0, &s, &len));
  CHECK(rt_gguf_arr(g, "t.arr_empty", &et, &u) && u == 0);
  CHECK(rt_gguf_arr(g, "t.arr_i32", &et, &u) && et == RT_GGUF_I32 && u == 4);
  CHECK(rt_gguf_arr_i64(g, "t.arr_i32", 1, &i64) && i64 == -1);
  CHECK(rt_gguf_arr_i64(g, "t.arr_i32", 3, &i64) && i64 == 2147483647);
  CHECK(!rt_gguf_arr_i64(g, "t.arr_i32", 4, &i64));
  CHECK(!rt_gguf_arr_i64(g, "t.arr_f32", 0, &i64));
  CHECK(rt_gguf_arr_f64(g, "t.arr_f32", 2, &d) && d == 3.25);
  CHECK(rt_gguf_arr_f64(g, "t.arr_i32", 1, &d) && d == -1);
  CHECK(rt_gguf_arr(g, "t.nested", &et, &u) && et == RT_GGUF_ARRAY && u == 2);
  CHECK(!rt_gguf_arr_f64(g, "t.nested", 0, &d));
  CHECK(rt_gguf_kv_count(g) >= 17);
  int type = -1;
  CHECK(rt_gguf_kv_key(g, 0, &type) && !strcmp(rt_gguf_kv_key(g, 0, NULL), "general.architecture") &&
        type == RT_GGUF_STRING);
  CHECK(rt_gguf_kv_key(g, rt_gguf_kv_count(g), NULL) == NULL);

  CHECK(rt_gguf_count(g) == N_TYPES + 1);
  CHECK(rt_gguf_tensor(g, -1) == NULL && rt_gguf_tensor(g, N_TYPES + 1) == NULL);
  for (int i = 0; i <= N_TYPES; i++) {
    const RtGgufTensor *t = rt_gguf_tensor(g, i);
    RefTensor *r = &refs[i];
    CHECK(t && rt_gguf_find(g, t->name) == t);
    if (!t) continue;
    CHECK(t->ggml_type == (int)(i < N_TYPES ? all_types[i] : 8));
    CHECK(t->rank == r->nd);
    for (int dd = 0; dd < 4; dd++) CHECK(t->ne[dd] == (int64_t)r->ne[dd]);
    CHECK(t->nbytes == r->nbytes && !memcmp(t->data, r->q, r->nbytes));
    float *out = malloc(r->n * sizeof(float));
    CHECK(rt_gguf_dequant(t, out, NULL) == RB_OK);
    float scale = 0;
    for (size_t k = 0; k < r->n; k++) scale = fmaxf(scale, fabsf(r->expect[k]));
    size_t bad = 0;
    for (size_t k = 0; k < r->n; k++) bad += !close_to(out[k], r->expect[k], scale);
    if (bad) fprintf(stderr, "tensor %s: %zu of %zu values differ from the reference\n", t->name, bad, r->n);
    CHECK(bad == 0);
    free(out);
  }
  CHECK(rt_gguf_find(g, "nope") == NULL);
}

static RtGguf *open_image(const RbBuf *img, const char *name, RbBuf *err, int *rc) {
  RtGguf *g = NULL;
  *rc = rt_gguf_open_memory(img->data, img->len, name, &g, err);
  return g;
}

static char tmpdir[256];

static void make_tmpdir(void) {
  const char *t = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/gguf-test-XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    exit(2);
  }
}

static int write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int ok = fwrite(p, 1, n, f) == n;
  return fclose(f) == 0 && ok ? 0 : -1;
}

static void case_roundtrip(void) {
  uint32_t aligns[2] = {32, 64};
  for (int a = 0; a < 2; a++) {
    for (uint32_t version = 2; version <= 3; version++) {
      uint64_t seed = 42 + a;
      GbFile f;
      RefTensor refs[N_TYPES + 1];
      build_good(&f, refs, aligns[a], &seed);
      f.version = version;
      RbBuf img = {0}, err = {0};
      size_t data_start;
      gb_finish(&f, &img, NULL, &data_start);
      CHECK(data_start % aligns[a] == 0);
      int rc;
      RtGguf *g = open_image(&img, "good.gguf", &err, &rc);
      if (rc) fprintf(stderr, "%s", err.data);
      CHECK(rc == RB_OK && g);
      if (g) {
        CHECK(rt_gguf_version(g) == (int)version);
        check_good(g, refs);
        /* tensor data really is at the aligned offsets */
        for (int i = 0; i < rt_gguf_count(g); i++)
          CHECK((size_t)((const char *)rt_gguf_tensor(g, i)->data - img.data) % aligns[a] == 0);
      }
      rt_gguf_close(g);
      /* the same through the file and mmap */
      char path[400];
      make_tmpdir();
      snprintf(path, sizeof path, "%s/good.gguf", tmpdir);
      CHECK(write_file(path, img.data, img.len) == 0);
      g = NULL;
      rb_buf_free(&err);
      rc = rt_gguf_open(path, &g, &err);
      if (rc) fprintf(stderr, "%s", err.data);
      CHECK(rc == RB_OK && g);
      if (g) {
        check_good(g, refs);
        CHECK(!strcmp(rt_gguf_tensor(g, 0)->file, path));
      }
      rt_gguf_close(g);
      unlink(path);
      rmdir(tmpdir);
      for (int i = 0; i <= N_TYPES; i++) ref_free(&refs[i]);
      rb_buf_free(&img);
      rb_buf_free(&err);
      gb_free(&f);
    }
  }
}

/* ---- corrupted files ---- */

/* Open img; it must fail with RB_EUSER and an error that starts with the
 * file name and contains want (and want2 when given). */
static void expect_error(const char *label, const RbBuf *img, const char *want, const char *want2) {
  RbBuf err = {0};
  int rc;
  RtGguf *g = open_image(img, "bad.gguf", &err, &rc);
  int ok = rc == RB_EUSER && !g && err.len && !strncmp(err.data, "bad.gguf: error: ", 17) &&
           strstr(err.data, want) && (!want2 || strstr(err.data, want2));
  if (!ok)
    fprintf(stderr, "case %s: rc %d, want \"%s\"%s%s, got: %s", label, rc, want,
            want2 ? " and " : "", want2 ? want2 : "", err.len ? err.data : "(no message)\n");
  else
    printf("%-22s %s", label, err.data);
  CHECK(ok);
  rt_gguf_close(g);
  rb_buf_free(&err);
}

/* A small valid file: two tensors, a few keys. */
static void build_small(GbFile *f, uint8_t *data) {
  gb_init(f);
  gb_str(f, "general.architecture", "llama");
  gb_u32(f, "llama.block_count", 1);
  for (int i = 0; i < 256; i++) data[i] = (uint8_t)i;
  uint64_t ne0[2] = {32, 2}, ne1[1] = {16};
  gb_tensor(f, "a.weight", 8, 2, ne0, data, 68);
  gb_tensor(f, "b.weight", 0, 1, ne1, data, 64);
}

static void image(GbFile *f, RbBuf *img) {
  rb_buf_free(img);
  gb_finish(f, img, NULL, NULL);
}

/* Three F32 tensors laid end to end: a [0, 64), b [64, 128), c [128, 384). */
static void build_spans(GbFile *f, uint8_t *data) {
  gb_init(f);
  gb_str(f, "general.architecture", "llama");
  for (int i = 0; i < 256; i++) data[i] = (uint8_t)i;
  uint64_t ne16[1] = {16}, ne64[1] = {64};
  gb_tensor(f, "a.weight", 0, 1, ne16, data, 64);
  gb_tensor(f, "b.weight", 0, 1, ne16, data, 64);
  gb_tensor(f, "c.weight", 0, 1, ne64, data, 256);
}

/* Rewrites the data offset in the tensor info of the 1-D tensor name in img,
 * leaving the data section as gb_finish laid it out. */
static void patch_offset(RbBuf *img, const char *name, uint64_t off) {
  RbBuf key = {0};
  gb_putstr(&key, name);
  char *p = memmem(img->data, img->len, key.data, key.len);
  CHECK(p != NULL);
  if (p) {
    p += key.len + 4 + 8 + 4; /* n_dims, ne[0], ggml type */
    for (int i = 0; i < 8; i++) p[i] = (char)(off >> (8 * i));
  }
  rb_buf_free(&key);
}

/* Tensors that share bytes are refused, naming both, lowest offset first;
 * tensors that only touch are fine. Offsets are 32-aligned throughout. */
static void case_overlap(void) {
  GbFile f;
  uint8_t data[256];
  RbBuf img = {0}, err = {0};
  build_spans(&f, data);
  image(&f, &img);
  int rc;
  RtGguf *g = open_image(&img, "touching.gguf", &err, &rc);
  CHECK(rc == RB_OK && g && rt_gguf_count(g) == 3);
  if (rc) fprintf(stderr, "touching: %s", err.data ? err.data : "(no message)\n");
  rt_gguf_close(g);
  rb_buf_free(&err);
  gb_free(&f);
  struct {
    const char *label;
    const char *moves[2]; /* tensor names */
    uint64_t to[2];
    const char *want;
  } oc[] = {
      {"overlap", {"b.weight"}, {32},
       "tensors 'a.weight' and 'b.weight' overlap (bytes [0, 64) and [32, 96) of the data section)"},
      {"overlap same offset", {"b.weight"}, {0},
       "tensors 'a.weight' and 'b.weight' overlap (bytes [0, 64) and [0, 64) of the data section)"},
      /* a comes first in the file but lies inside c: named in offset order */
      {"overlap inside", {"a.weight"}, {160},
       "tensors 'c.weight' and 'a.weight' overlap (bytes [128, 384) and [160, 224) of the data section)"},
      /* c spans the whole section; b no longer touches a, yet both lie in c */
      {"overlap spanning", {"c.weight", "a.weight"}, {0, 320},
       "tensors 'c.weight' and 'b.weight' overlap (bytes [0, 256) and [64, 128) of the data section)"},
  };
  for (size_t i = 0; i < sizeof oc / sizeof oc[0]; i++) {
    build_spans(&f, data);
    image(&f, &img);
    for (int m = 0; m < 2 && oc[i].moves[m]; m++) patch_offset(&img, oc[i].moves[m], oc[i].to[m]);
    expect_error(oc[i].label, &img, oc[i].want, NULL);
    gb_free(&f);
  }
  rb_buf_free(&img);
}

static void case_corrupt(void) {
  GbFile f;
  uint8_t data[256];
  RbBuf img = {0};

  build_small(&f, data);
  image(&f, &img);
  {
    RbBuf err = {0};
    int rc;
    RtGguf *g = open_image(&img, "small.gguf", &err, &rc);
    CHECK(rc == RB_OK);
    rt_gguf_close(g);
    rb_buf_free(&err);
  }
  img.data[3] = 'X';
  expect_error("bad magic", &img, "bad magic", NULL);
  img.data[3] = 'F';
  img.data[4] = 1;
  expect_error("version 1", &img, "version 1", NULL);
  img.data[4] = 4;
  expect_error("version 4", &img, "unsupported GGUF version 4", NULL);
  img.data[4] = 0, img.data[7] = 3;
  expect_error("big-endian", &img, "big-endian", NULL);
  img.data[4] = 3, img.data[7] = 0;
  memcpy(img.data + 8, "\0\0\0\0\0\0\0\x40", 8); /* 2^62 tensors */
  expect_error("huge tensor count", &img, "tensor count 4611686018427387904", NULL);
  memcpy(img.data + 8, "\x02\0\0\0\0\0\0\0", 8);
  memcpy(img.data + 16, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
  expect_error("huge metadata count", &img, "metadata count 18446744073709551615", NULL);
  memcpy(img.data + 16, "\x02\0\0\0\0\0\0\0", 8);
  memcpy(img.data + 24, "\0\0\0\0\0\0\0\x10", 8); /* key length 2^60 */
  expect_error("huge key length", &img, "metadata entry 0", "runs past the end");
  gb_free(&f);

  /* value-level corruption, each through a raw entry */
  struct {
    const char *label, *want, *want2;
    const char *bytes;
    size_t n;
  } raw[] = {
      {"huge string value", "metadata key 'k'", "string value length 9223372036854775808",
       "\x08\0\0\0" "\0\0\0\0\0\0\0\x80", 12},
      {"unknown value type", "metadata key 'k'", "unknown value type 13", "\x0d\0\0\0", 4},
      {"array elem type", "array element type 99", NULL, "\x09\0\0\0" "\x63\0\0\0" "\x01\0\0\0\0\0\0\0", 16},
      {"huge array count", "metadata key 'k'", "array of 2305843009213693952 uint32",
       "\x09\0\0\0" "\x04\0\0\0" "\0\0\0\0\0\0\0\x20", 16},
      {"huge string array", "array of 1152921504606846976 string", NULL,
       "\x09\0\0\0" "\x08\0\0\0" "\0\0\0\0\0\0\0\x10", 16},
      {"string in array long", "string 1 of the array", NULL,
       "\x09\0\0\0" "\x08\0\0\0" "\x02\0\0\0\0\0\0\0" "\x01\0\0\0\0\0\0\0" "a" "\0\0\0\0\0\x01\0\0", 33},
      {"alignment type", "metadata key 'general.alignment'", "must be uint32", "\x0a\0\0\0" "\x20\0\0\0\0\0\0\0", 12},
      {"alignment 48", "alignment 48 is not a power of two", NULL, "\x04\0\0\0" "\x30\0\0\0", 8},
      {"alignment 0", "alignment 0 is not a power of two", NULL, "\x04\0\0\0" "\0\0\0\0", 8},
  };
  for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
    build_small(&f, data);
    gb_raw(&f, strstr(raw[i].label, "alignment") ? "general.alignment" : "k", raw[i].bytes, raw[i].n);
    gb_u32(&f, "after", 1);
    image(&f, &img);
    expect_error(raw[i].label, &img, raw[i].want, raw[i].want2);
    gb_free(&f);
  }

  /* arrays nested 9 deep */
  build_small(&f, data);
  {
    RbBuf nest = {0};
    gb_put32(&nest, 9);
    for (int d = 0; d < 9; d++) {
      gb_put32(&nest, 9);
      gb_put64(&nest, 1);
    }
    gb_put32(&nest, 0);
    gb_put64(&nest, 0);
    gb_raw(&f, "deep", nest.data, nest.len);
    rb_buf_free(&nest);
  }
  image(&f, &img);
  expect_error("nested too deep", &img, "metadata key 'deep'", "nested more than 8 deep");
  gb_free(&f);

  /* keys: duplicate, empty, NUL byte */
  build_small(&f, data);
  gb_u32(&f, "llama.block_count", 2);
  image(&f, &img);
  expect_error("duplicate key", &img, "metadata key 'llama.block_count'", "duplicate key");
  gb_free(&f);
  build_small(&f, data);
  gb_u32(&f, "", 2);
  image(&f, &img);
  expect_error("empty key", &img, "metadata entry 2", "key is empty");
  gb_free(&f);
  build_small(&f, data);
  {
    RbBuf k = {0};
    gb_put64(&k, 3);
    rb_buf_put(&k, "a\0b", 3);
    gb_put32(&k, 4);
    gb_put32(&k, 1);
    rb_buf_put(&f.kv, k.data, k.len);
    f.nkv++;
    rb_buf_free(&k);
  }
  image(&f, &img);
  expect_error("NUL in key", &img, "metadata entry 2", "NUL byte");
  gb_free(&f);

  /* tensor infos */
  struct {
    const char *label, *want, *want2;
    int tensor;       /* which of the two to change */
    uint32_t type, nd;
    uint64_t ne0, ne1, offset;
    int set_offset;
  } tc[] = {
      {"offset out of bounds", "tensor 'b.weight'", "runs past the end", 1, 0, 1, 16, 1, 4096, 1},
      {"offset overflow", "tensor 'b.weight'", "runs past the end", 1, 0, 1, 16, 1, 0xffffffffffffffe0ull, 1},
      {"misaligned", "tensor 'a.weight'", "data offset 8 is not a multiple of the alignment 32", 0, 8, 2, 32, 2, 8, 1},
      {"unknown type", "tensor 'a.weight'", "unknown or unsupported ggml type 5", 0, 5, 2, 32, 2, 0, 0},
      {"type 1000", "tensor 'a.weight'", "ggml type 1000", 0, 1000, 2, 32, 2, 0, 0},
      {"ne0 not block", "tensor 'a.weight'", "ne[0] = 48 is not a multiple of the Q8_0 block size 32", 0, 8, 2, 48, 2, 0, 0},
      {"n_dims 5", "tensor 'a.weight'", "n_dims 5 is not in 1..4", 0, 8, 5, 32, 2, 0, 0},
      {"n_dims 0", "tensor 'a.weight'", "n_dims 0", 0, 8, 0, 32, 2, 0, 0},
      {"zero dim", "tensor 'b.weight'", "dimension 0 is zero", 1, 0, 1, 0, 1, 0, 0},
      {"count overflow", "tensor 'a.weight'", "dimension 1 (1099511627776) makes the element count overflow", 0, 8, 2, 1ull << 40, 1ull << 40, 0, 0},
      {"data too long", "tensor 'a.weight'", "runs past the end", 0, 8, 2, 32, 1000, 0, 0},
  };
  for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++) {
    build_small(&f, data);
    GbTensor *t = &f.t[tc[i].tensor];
    t->type = tc[i].type;
    t->ndims = tc[i].nd;
    t->ne[0] = tc[i].ne0;
    t->ne[1] = tc[i].ne1;
    if (tc[i].nd == 5) t->ne[2] = t->ne[3] = 1, t->ndims = 4; /* write 4, then patch below */
    if (tc[i].set_offset) t->offset = tc[i].offset, t->force_offset = 1;
    image(&f, &img);
    if (tc[i].nd == 5) {
      /* the n_dims field sits right after "a.weight"'s name in the infos */
      char *p = memmem(img.data, img.len, "a.weight", 8);
      p[8] = 5;
    }
    expect_error(tc[i].label, &img, tc[i].want, tc[i].want2);
    gb_free(&f);
  }

  /* duplicate tensor, huge tensor name */
  build_small(&f, data);
  snprintf(f.t[1].name, sizeof f.t[1].name, "a.weight");
  image(&f, &img);
  expect_error("duplicate tensor", &img, "tensor 'a.weight'", "duplicate tensor name");
  gb_free(&f);
  build_small(&f, data);
  image(&f, &img);
  {
    char *p = memmem(img.data, img.len, "b.weight", 8);
    memcpy(p - 8, "\0\0\0\0\0\0\0\x01", 8); /* its length prefix: 2^56 */
  }
  expect_error("huge tensor name", &img, "tensor info 1", "tensor name length 72057594037927936");
  gb_free(&f);
  rb_buf_free(&img);

  /* files that are not files */
  RbBuf err = {0};
  RtGguf *g = NULL;
  CHECK(rt_gguf_open("/nonexistent/x.gguf", &g, &err) == RB_EUSER && !g &&
        strstr(err.data, "/nonexistent/x.gguf: error: cannot open"));
  rb_buf_free(&err);
  CHECK(rt_gguf_open("/", &g, &err) == RB_EUSER && strstr(err.data, "not a regular file"));
  rb_buf_free(&err);
  CHECK(rt_gguf_open_memory("", 0, "empty.gguf", &g, &err) == RB_EUSER && strstr(err.data, "truncated"));
  rb_buf_free(&err);
}

/* Cut the good file at every byte: each prefix must be a clean error. */
static void case_truncate(void) {
  uint64_t seed = 7;
  GbFile f;
  RefTensor refs[N_TYPES + 1];
  build_good(&f, refs, 32, &seed);
  RbBuf img = {0};
  gb_finish(&f, &img, NULL, NULL);
  int bad = 0;
  for (size_t n = 0; n < img.len; n++) {
    RbBuf err = {0};
    RtGguf *g = NULL;
    /* a fresh heap copy, so ASan catches any read past the prefix */
    char *copy = malloc(n ? n : 1);
    memcpy(copy, img.data, n);
    int rc = rt_gguf_open_memory(copy, n, "cut.gguf", &g, &err);
    if (rc != RB_EUSER || g || !err.len || strncmp(err.data, "cut.gguf: error: ", 17) ||
        (!strstr(err.data, "truncated") && !strstr(err.data, "runs past the end") &&
         !strstr(err.data, "cannot fit"))) {
      if (bad++ < 5) fprintf(stderr, "cut at %zu: rc %d: %s", n, rc, err.len ? err.data : "(none)\n");
    }
    rt_gguf_close(g);
    free(copy);
    rb_buf_free(&err);
  }
  printf("truncated at all %zu offsets: %d bad\n", img.len, bad);
  CHECK(bad == 0);
  for (int i = 0; i <= N_TYPES; i++) ref_free(&refs[i]);
  rb_buf_free(&img);
  gb_free(&f);
}

/* ---- dequantization, one ggml type per case ---- */

static void case_dequant(uint32_t type) {
  uint64_t seed = 1000 + type;
  size_t block, bytes;
  gb_type_block(type, &block, &bytes);
  /* several rows, several blocks per row, fresh random data */
  uint64_t ne[2] = {block == 256 ? 768 : 96, 5};
  RefTensor r;
  ref_tensor(&r, type, 2, ne, &seed);
  GbFile f;
  gb_init(&f);
  gb_tensor(&f, "t", type, 2, ne, r.q, r.nbytes);
  RbBuf img = {0}, err = {0};
  gb_finish(&f, &img, NULL, NULL);
  int rc;
  RtGguf *g = open_image(&img, "dq.gguf", &err, &rc);
  CHECK(rc == RB_OK);
  if (!g) return;
  const RtGgufTensor *t = rt_gguf_find(g, "t");
  float *out = malloc(r.n * sizeof(float));
  CHECK(rt_gguf_dequant(t, out, &err) == RB_OK);
  /* exact against the reference's decoded values; loose against the input,
   * which catches a value decoded at another element's position */
  float scale = 0, worst = 0;
  size_t bad = 0;
  for (size_t i = 0; i < r.n; i++) scale = fmaxf(scale, fabsf(r.expect[i]));
  for (size_t i = 0; i < r.n; i++) {
    bad += !close_to(out[i], r.expect[i], scale);
    float rowmax = 0.05f + 0.1f * (float)((i / ne[0]) % 7);
    worst = fmaxf(worst, fabsf(out[i] - r.x[i]) / rowmax);
  }
  /* quantization error relative to the row's range: 4-bit formats step at
   * about 2/15 of it; the K-quants add scale rounding. */
  float limit = type == 0 ? 0 : type == 1 ? 1e-3f : type == 8 ? 0.01f : type == 14 ? 0.05f : 0.15f;
  printf("%s: %zu values, %zu differ from the reference, worst error vs input %.4f of the row range (limit %.4f)\n",
         rt_ggml_type_name((int)type), r.n, bad, worst, limit);
  CHECK(bad == 0);
  CHECK(worst <= limit);
  /* values must not all be equal: the test data is random, never zeros */
  CHECK(out[0] != out[1] || out[1] != out[2]);
  free(out);
  rt_gguf_close(g);
  ref_free(&r);
  rb_buf_free(&img);
  rb_buf_free(&err);
  gb_free(&f);
}

static void case_dequant_unsupported(void) {
  uint8_t data[176 * 2] = {0};
  GbFile f;
  gb_init(&f);
  uint64_t ne[1] = {512};
  gb_tensor(&f, "blk.3.ffn_down.weight", 13, 1, ne, data, sizeof data); /* Q5_K */
  RbBuf img = {0}, err = {0};
  gb_finish(&f, &img, NULL, NULL);
  int rc;
  RtGguf *g = open_image(&img, "q5k.gguf", &err, &rc);
  CHECK(rc == RB_OK); /* known size: the file opens */
  float out[512];
  if (g) {
    CHECK(rt_gguf_dequant(rt_gguf_tensor(g, 0), out, &err) == RB_EUSER);
    CHECK(err.len && strstr(err.data, "q5k.gguf: error: tensor 'blk.3.ffn_down.weight': cannot dequantize ggml type Q5_K"));
    printf("%s", err.data);
  }
  rt_gguf_close(g);
  rb_buf_free(&img);
  rb_buf_free(&err);
  gb_free(&f);
}

/* ---- Q/K permutation ---- */

/* llama.cpp's convert_hf_to_gguf permute, written from its numpy form:
 * w.reshape(n_head, 2, hd/2, K).swapaxes(1, 2).reshape(N, K). Output row
 * (h, i, s) in the swapped shape (n_head, hd/2, 2) is input row (h, s, i). */
static void ref_permute(const float *hf, float *gg, int rows, int cols, int n_head) {
  int hd = rows / n_head, half = hd / 2;
  for (int h = 0; h < n_head; h++)
    for (int i = 0; i < half; i++)
      for (int s = 0; s < 2; s++) {
        int out_row = (h * half + i) * 2 + s;       /* C order of (n_head, hd/2, 2) */
        int in_row = (h * 2 + s) * half + i;        /* C order of (n_head, 2, hd/2) */
        memcpy(gg + (size_t)out_row * cols, hf + (size_t)in_row * cols, (size_t)cols * sizeof(float));
      }
}

static void case_unpermute(void) {
  /* hand-computed: 2 heads of 4 rows; GGUF order is HF rows 0,2,1,3, 4,6,5,7 */
  float w[8], want_gguf[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int i = 0; i < 8; i++) w[i] = (float)i;
  float gg[8];
  ref_permute(w, gg, 8, 1, 2);
  CHECK(!memcmp(gg, want_gguf, sizeof gg));
  CHECK(rt_gguf_unpermute_rows(gg, 8, 1, 2, NULL) == RB_OK);
  for (int i = 0; i < 8; i++) CHECK(gg[i] == (float)i);
  /* one head of 6: GGUF 0,3,1,4,2,5 */
  float six[6] = {0, 3, 1, 4, 2, 5};
  CHECK(rt_gguf_unpermute_rows(six, 6, 1, 1, NULL) == RB_OK);
  for (int i = 0; i < 6; i++) CHECK(six[i] == (float)i);

  /* random shapes: permute then unpermute is the identity (Q with n_head,
   * K with n_kv_head, as the converter calls it) */
  uint64_t seed = 99;
  int shapes[][3] = {{576, 7, 9}, {192, 5, 3}, {64, 3, 1}, {128, 1, 32}, {2, 4, 1}};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    int rows = shapes[k][0], cols = shapes[k][1], nh = shapes[k][2];
    size_t n = (size_t)rows * cols;
    float *a = malloc(n * 4), *b = malloc(n * 4);
    for (size_t i = 0; i < n; i++) a[i] = gb_randf(&seed);
    ref_permute(a, b, rows, cols, nh);
    CHECK(memcmp(a, b, n * 4) != 0 || rows == 2);
    CHECK(rt_gguf_unpermute_rows(b, rows, cols, nh, NULL) == RB_OK);
    CHECK(!memcmp(a, b, n * 4));
    free(a);
    free(b);
  }
  /* shapes that are not n_head * even */
  RbBuf err = {0};
  float z[12] = {0};
  CHECK(rt_gguf_unpermute_rows(z, 12, 1, 5, &err) == RB_EUSER);
  CHECK(rt_gguf_unpermute_rows(z, 12, 1, 4, &err) == RB_EUSER); /* head dim 3: odd */
  CHECK(rt_gguf_unpermute_rows(z, 12, 1, 0, &err) == RB_EUSER);
  CHECK(err.len && strstr(err.data, "even"));
  rb_buf_free(&err);
}

/* The point of the un-permutation: with GGUF rows, llama.cpp's RoPE rotates
 * adjacent pairs (2i, 2i+1); with HF rows, rotate-half rotates (i, i+hd/2),
 * both with theta_i = base^(-2i/hd). The un-permuted projection under
 * rotate-half must equal the GGUF projection under adjacent-pair RoPE,
 * re-indexed; and the attention score q.k must agree. */
static void rope_pairs(float *v, int hd, int pos, double base) { /* ggml NORM */
  for (int i = 0; i < hd / 2; i++) {
    double th = pos * pow(base, -2.0 * i / hd), c = cos(th), s = sin(th);
    float x0 = v[2 * i], x1 = v[2 * i + 1];
    v[2 * i] = (float)(x0 * c - x1 * s);
    v[2 * i + 1] = (float)(x0 * s + x1 * c);
  }
}

static void rope_half(float *v, int hd, int pos, double base) { /* HF rotate_half */
  int h = hd / 2;
  for (int i = 0; i < h; i++) {
    double th = pos * pow(base, -2.0 * i / hd), c = cos(th), s = sin(th);
    float x0 = v[i], x1 = v[i + h];
    v[i] = (float)(x0 * c - x1 * s);
    v[i + h] = (float)(x1 * c + x0 * s);
  }
}

static void case_rope(void) {
  enum { NH = 3, HD = 8, K = 12, N = NH * HD };
  uint64_t seed = 5;
  float hf_q[N * K], hf_k[N * K], gg_q[N * K], gg_k[N * K], x1[K], x2[K];
  for (int i = 0; i < N * K; i++) hf_q[i] = gb_randf(&seed), hf_k[i] = gb_randf(&seed);
  for (int i = 0; i < K; i++) x1[i] = gb_randf(&seed), x2[i] = gb_randf(&seed);
  ref_permute(hf_q, gg_q, N, K, NH); /* what a GGUF file holds */
  ref_permute(hf_k, gg_k, N, K, NH);
  float un_q[N * K], un_k[N * K];
  memcpy(un_q, gg_q, sizeof un_q);
  memcpy(un_k, gg_k, sizeof un_k);
  CHECK(rt_gguf_unpermute_rows(un_q, N, K, NH, NULL) == RB_OK);
  CHECK(rt_gguf_unpermute_rows(un_k, N, K, NH, NULL) == RB_OK);
  double worst = 0;
  for (int h = 0; h < NH; h++) {
    float qg[HD], kg[HD], qh[HD], kh[HD];
    for (int r = 0; r < HD; r++) {
      qg[r] = kg[r] = qh[r] = kh[r] = 0;
      for (int c = 0; c < K; c++) {
        qg[r] += gg_q[(h * HD + r) * K + c] * x1[c];
        kg[r] += gg_k[(h * HD + r) * K + c] * x2[c];
        qh[r] += un_q[(h * HD + r) * K + c] * x1[c];
        kh[r] += un_k[(h * HD + r) * K + c] * x2[c];
      }
    }
    rope_pairs(qg, HD, 7, 100000), rope_pairs(kg, HD, 3, 100000);
    rope_half(qh, HD, 7, 100000), rope_half(kh, HD, 3, 100000);
    double sg = 0, sh = 0;
    for (int r = 0; r < HD; r++) sg += qg[r] * kg[r], sh += qh[r] * kh[r];
    worst = fmax(worst, fabs(sg - sh));
    /* element-wise: HF index s*hd/2 + i is GGUF index 2i + s */
    for (int i = 0; i < HD / 2; i++)
      for (int s = 0; s < 2; s++) CHECK(fabsf(qh[s * HD / 2 + i] - qg[2 * i + s]) < 1e-4f);
  }
  printf("rope: worst |score difference| %.2e\n", worst);
  CHECK(worst < 1e-4);
}

/* Every allocation the reader makes fails once in turn: each failure is
 * RB_EINTERNAL with no handle and no leak (ASan checks), never a crash. */
static void case_alloc_fail(void) {
  uint64_t seed = 11;
  GbFile f;
  RefTensor refs[N_TYPES + 1];
  build_good(&f, refs, 32, &seed);
  RbBuf img = {0};
  gb_finish(&f, &img, NULL, NULL);
  int n = 0, rc;
  for (;; n++) {
    RbBuf err = {0};
    RtGguf *g = NULL;
    rb_alloc_fail_after = n;
    rc = rt_gguf_open_memory(img.data, img.len, "oom.gguf", &g, &err);
    rb_alloc_fail_after = -1;
    rb_buf_free(&err);
    if (rc == RB_OK) {
      check_good(g, refs);
      rt_gguf_close(g);
      break;
    }
    CHECK(rc == RB_EINTERNAL && !g);
    if (rc != RB_EINTERNAL || n > 100000) break;
  }
  printf("alloc_fail: %d allocation points, each failed cleanly\n", n);
  CHECK(n > 3);
  for (int i = 0; i <= N_TYPES; i++) ref_free(&refs[i]);
  rb_buf_free(&img);
  gb_free(&f);
}

/* ---- seeds for the fuzzer ---- */

static int write_corpus(const char *dir) {
  uint64_t seed = 3;
  GbFile f;
  RefTensor refs[N_TYPES + 1];
  build_good(&f, refs, 32, &seed);
  RbBuf img = {0};
  gb_finish(&f, &img, NULL, NULL);
  char path[4096];
  snprintf(path, sizeof path, "%s/good_all_types.gguf", dir);
  int rc = write_file(path, img.data, img.len);
  for (int i = 0; i <= N_TYPES; i++) ref_free(&refs[i]);
  gb_free(&f);
  rb_buf_free(&img);
  uint8_t data[256];
  build_small(&f, data);
  gb_u32(&f, "general.alignment", 64);
  f.alignment = 64;
  gb_finish(&f, &img, NULL, NULL);
  snprintf(path, sizeof path, "%s/small_align64.gguf", dir);
  rc |= write_file(path, img.data, img.len);
  gb_free(&f);
  rb_buf_free(&img);
  build_spans(&f, data); /* b moved onto a: refused, and a start for mutations near the check */
  gb_finish(&f, &img, NULL, NULL);
  patch_offset(&img, "b.weight", 32);
  snprintf(path, sizeof path, "%s/overlap.gguf", dir);
  rc |= write_file(path, img.data, img.len);
  gb_free(&f);
  rb_buf_free(&img);
  printf("wrote seeds to %s\n", dir);
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_gguf CASE\n");
    return 2;
  }
  const char *c = argv[1];
  if (!strcmp(c, "write_corpus")) return argc > 2 ? write_corpus(argv[2]) : 2;
  if (!strcmp(c, "roundtrip")) case_roundtrip();
  else if (!strcmp(c, "corrupt")) case_corrupt();
  else if (!strcmp(c, "overlap")) case_overlap();
  else if (!strcmp(c, "truncate")) case_truncate();
  else if (!strcmp(c, "unsupported")) case_dequant_unsupported();
  else if (!strcmp(c, "unpermute")) case_unpermute();
  else if (!strcmp(c, "rope")) case_rope();
  else if (!strcmp(c, "alloc_fail")) case_alloc_fail();
  else if (!strncmp(c, "dequant_", 8)) {
    int found = 0;
    for (int i = 0; i < N_TYPES; i++)
      if (!strcasecmp(c + 8, rt_ggml_type_name((int)all_types[i]))) case_dequant(all_types[i]), found = 1;
    if (!found) {
      fprintf(stderr, "unknown type in %s\n", c);
      return 2;
    }
  } else {
    fprintf(stderr, "unknown case %s\n", c);
    return 2;
  }
  if (failures) fprintf(stderr, "%s: %d checks failed\n", c, failures);
  else printf("%s: ok\n", c);
  return failures ? 1 : 0;
}
