/* test_st: the safetensors reader and writer. One binary, one ctest per case:
 *   test_st <dir> roundtrip|handbuilt|accept|writer_errors|alloc_fail|large
 *   test_st <dir> corrupt <case>   (a damaged file must fail with a given message)
 * <dir> is a scratch directory; each case works in its own folder there. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/formats/formats.h"

static const char *dir;
static int failures;

#define CHECK(c)                                                      \
  do {                                                                \
    if (!(c)) {                                                       \
      printf("%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);    \
      failures++;                                                     \
    }                                                                 \
  } while (0)

static char *path_in(const char *name) {
  static char buf[8][4096];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, sizeof buf[0], "%s/%s", dir, name);
  return p;
}

/* Fresh random bytes each run (the seed is printed so a failure can be
 * replayed): data that is all zeros would hide swapped or shifted tensors. */
static unsigned long long rng;
static void fill_random(void *p, size_t n) {
  unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    b[i] = (unsigned char)(rng >> 24);
  }
}

static int write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t k = n ? fwrite(p, 1, n, f) : 0;
  return (fclose(f) != 0 || k != n) ? -1 : 0;
}

/* A file image: 8-byte little-endian length, header, data. */
static size_t image(unsigned char *out, const char *json, const void *data, size_t dlen) {
  size_t h = strlen(json);
  for (int i = 0; i < 8; i++) out[i] = (unsigned char)((unsigned long long)h >> (8 * i));
  memcpy(out + 8, json, h);
  if (dlen) memcpy(out + 8 + h, data, dlen);
  return 8 + h + dlen;
}

/* Counts files in dir whose name contains ".tmp.": a writer must leave none. */
static int temp_files(void) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  if (d) closedir(d);
  return n;
}

/* ---- roundtrip: write every dtype at several ranks, read back ---- */

typedef struct {
  const char *name;
  RtDtype dt;
  int rank;
  int64_t shape[RT_MAX_DIMS];
} Spec;

static const Spec specs[] = {
    {"model.embed_tokens.weight", RT_F32, 2, {3, 5}},
    {"model.layers.0.self_attn.q_proj.g", RT_F16, 2, {2, 7}},
    {"model.layers.0.self_attn.q_proj.h", RT_BF16, 3, {2, 3, 4}},
    {"model.layers.0.self_attn.q_proj.bits", RT_I32, 4, {2, 2, 2, 3}},
    {"scalar", RT_I64, 0, {0}},
    {"bytes", RT_U8, 1, {13}},
    {"empty", RT_I8, 2, {0, 5}},
    {"odd \"name\" with \\ and \xc3\xa9\xe2\x82\xac", RT_F16, 1, {3}},
    {"model.norm.weight", RT_F32, 1, {9}},
};
enum { NSPEC = sizeof specs / sizeof specs[0] };

static size_t spec_bytes(const Spec *s) {
  size_t n = rt_dtype_size(s->dt);
  for (int i = 0; i < s->rank; i++) n *= (size_t)s->shape[i];
  return n;
}

static void test_roundtrip(void) {
  void *data[NSPEC];
  RtStWriter *w = NULL;
  CHECK(rt_st_writer_new(&w) == RB_OK);
  for (int i = 0; i < NSPEC; i++) {
    data[i] = malloc(spec_bytes(&specs[i]) + 1);
    fill_random(data[i], spec_bytes(&specs[i]));
    CHECK(rt_st_writer_add(w, specs[i].name, specs[i].dt, specs[i].rank, specs[i].shape, data[i]) == RB_OK);
  }
  CHECK(rt_st_writer_meta(w, "format", "rabit-packed-0") == RB_OK);
  CHECK(rt_st_writer_meta(w, "model", "first") == RB_OK);
  CHECK(rt_st_writer_meta(w, "model", "tiny-llama") == RB_OK); /* the last value wins */
  CHECK(rt_st_writer_meta(w, "note", "quote \" backslash \\ newline \n tab \t") == RB_OK);
  const char *path = path_in("roundtrip.safetensors");
  RbBuf err = {0};
  /* Twice: the second replaces the first through the rename. */
  for (int pass = 0; pass < 2; pass++) {
    if (pass) {
      CHECK(rt_st_writer_new(&w) == RB_OK);
      for (int i = 0; i < NSPEC; i++)
        CHECK(rt_st_writer_add(w, specs[i].name, specs[i].dt, specs[i].rank, specs[i].shape, data[i]) == RB_OK);
      rt_st_writer_meta(w, "format", "rabit-packed-0");
      rt_st_writer_meta(w, "model", "tiny-llama");
      rt_st_writer_meta(w, "note", "quote \" backslash \\ newline \n tab \t");
    }
    int rc = rt_st_writer_finish(w, path, &err);
    CHECK(rc == RB_OK);
    if (rc) printf("%s\n", err.data);
  }
  CHECK(temp_files() == 0);

  RtSafetensors *st = NULL;
  int rc = rt_st_open(path, &st, &err);
  CHECK(rc == RB_OK);
  if (rc) {
    printf("%s\n", err.data);
    return;
  }
  CHECK(rt_st_count(st) == NSPEC);
  for (int i = 0; i < NSPEC && i < rt_st_count(st); i++) {
    const RtTensor *t = rt_st_tensor(st, i);
    CHECK(strcmp(t->name, specs[i].name) == 0); /* header order = order added */
    CHECK(t->dtype == specs[i].dt);
    CHECK(t->rank == specs[i].rank);
    for (int d = 0; d < t->rank; d++) CHECK(t->shape[d] == specs[i].shape[d]);
    CHECK(t->nbytes == spec_bytes(&specs[i]));
    CHECK(t->nbytes == 0 || memcmp(t->data, data[i], t->nbytes) == 0);
    CHECK(rt_st_find(st, specs[i].name) == t);
  }
  CHECK(rt_st_find(st, "model.layers.0.self_attn.k_proj.bits") == NULL);
  CHECK(rt_st_find(st, "") == NULL);
  CHECK(rt_st_find(st, "__metadata__") == NULL);
  CHECK(rt_st_tensor(st, -1) == NULL && rt_st_tensor(st, NSPEC) == NULL);
  CHECK(rt_st_meta(st, "format") && strcmp(rt_st_meta(st, "format"), "rabit-packed-0") == 0);
  CHECK(rt_st_meta(st, "model") && strcmp(rt_st_meta(st, "model"), "tiny-llama") == 0);
  CHECK(rt_st_meta(st, "note") && strcmp(rt_st_meta(st, "note"), "quote \" backslash \\ newline \n tab \t") == 0);
  CHECK(rt_st_meta(st, "absent") == NULL);
  /* Packed in order, and the data section starts 8-aligned. */
  const unsigned char *first = rt_st_tensor(st, 0)->data;
  CHECK(((uintptr_t)first & 7) == 0);
  for (int i = 1; i < NSPEC; i++) {
    const RtTensor *p = rt_st_tensor(st, i - 1), *t = rt_st_tensor(st, i);
    CHECK((const unsigned char *)t->data == (const unsigned char *)p->data + p->nbytes);
  }
  rt_st_close(st);
  for (int i = 0; i < NSPEC; i++) free(data[i]);
  CHECK(rt_dtype_size(RT_BF16) == 2 && rt_dtype_size(RT_I64) == 8 && rt_dtype_size(RT_I8) == 1);
  CHECK(strcmp(rt_dtype_name(RT_BF16), "BF16") == 0 && strcmp(rt_dtype_name(RT_U8), "U8") == 0);
  rb_buf_free(&err);
}

/* ---- handbuilt: bytes laid out by hand, independent of our writer ---- */

static void test_handbuilt(void) {
  /* f16 [2,2] = 1.0 -2.0 0.5 65504; f32 [2] = 1.5 -3.25; all little-endian. */
  static const unsigned char data[] = {0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0xff, 0x7b,
                                       0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x50, 0xc0};
  const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                     "\"w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"data_offsets\":[8,16],\"shape\":[2],\"dtype\":\"F32\"}}";
  unsigned char file[512];
  size_t h = strlen(json);
  /* Header length byte by byte: the reader must take it as little-endian. */
  file[0] = (unsigned char)(h & 0xff);
  file[1] = (unsigned char)(h >> 8);
  for (int i = 2; i < 8; i++) file[i] = 0;
  memcpy(file + 8, json, h);
  memcpy(file + 8 + h, data, sizeof data);
  const char *path = path_in("handbuilt.safetensors");
  CHECK(write_bytes(path, file, 8 + h + sizeof data) == 0);
  RtSafetensors *st = NULL;
  RbBuf err = {0};
  int rc = rt_st_open(path, &st, &err);
  CHECK(rc == RB_OK);
  if (rc) {
    printf("%s\n", err.data);
    return;
  }
  CHECK(rt_st_count(st) == 2);
  const RtTensor *w = rt_st_find(st, "w"), *b = rt_st_find(st, "b");
  CHECK(w && b && w == rt_st_tensor(st, 0) && b == rt_st_tensor(st, 1));
  if (w && b) {
    CHECK(w->dtype == RT_F16 && w->rank == 2 && w->shape[0] == 2 && w->shape[1] == 2 && w->nbytes == 8);
    CHECK(b->dtype == RT_F32 && b->rank == 1 && b->shape[0] == 2 && b->nbytes == 8);
    const float want_w[4] = {1.0f, -2.0f, 0.5f, 65504.0f};
    for (int i = 0; i < 4; i++) {
      uint16_t x;
      memcpy(&x, (const char *)w->data + 2 * i, 2);
      CHECK(rb_f32_from_f16(x) == want_w[i]);
    }
    float v[2];
    memcpy(v, b->data, 8);
    CHECK(v[0] == 1.5f && v[1] == -3.25f);
  }
  CHECK(rt_st_meta(st, "format") && strcmp(rt_st_meta(st, "format"), "pt") == 0);
  rt_st_close(st);

  /* The writer's bytes, pinned: same content must give exactly this file. */
  RtStWriter *wr = NULL;
  rt_st_writer_new(&wr);
  rt_st_writer_meta(wr, "format", "pt");
  rt_st_writer_add(wr, "w", RT_F16, 2, (const int64_t[]){2, 2}, data);
  rt_st_writer_add(wr, "b", RT_F32, 1, (const int64_t[]){2}, data + 8);
  const char *out = path_in("handbuilt_written.safetensors");
  CHECK(rt_st_writer_finish(wr, out, &err) == RB_OK);
  const char *want_json = "{\"__metadata__\":{\"format\":\"pt\"},"
                          "\"w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
  unsigned char want[512];
  size_t wh = strlen(want_json), padded = (wh + 7) / 8 * 8;
  memset(want, ' ', sizeof want);
  memcpy(want + 8, want_json, wh);
  for (int i = 0; i < 8; i++) want[i] = (unsigned char)(padded >> (8 * i));
  memcpy(want + 8 + padded, data, sizeof data);
  RbBuf got = {0};
  CHECK(rb_read_file(out, &got) == 0);
  CHECK(got.len == 8 + padded + sizeof data);
  CHECK(got.len == 8 + padded + sizeof data && memcmp(got.data, want, got.len) == 0);
  rb_buf_free(&got);
  rb_buf_free(&err);
}

/* ---- accept: unusual but valid files ---- */

static int opens(const char *json, const void *data, size_t dlen, RtSafetensors **st) {
  static unsigned char file[4096];
  size_t n = image(file, json, data, dlen);
  RbBuf err = {0};
  int rc = rt_st_open_memory(file, n, "accept.safetensors", st, &err);
  if (rc) printf("unexpected: %s\n", err.data);
  rb_buf_free(&err);
  return rc;
}

static void test_accept(void) {
  unsigned char d[64];
  fill_random(d, sizeof d);
  RtSafetensors *st = NULL;
  CHECK(opens("{}", NULL, 0, &st) == RB_OK && rt_st_count(st) == 0);
  rt_st_close(st);
  CHECK(opens("  {\"__metadata__\":{}}    ", NULL, 0, &st) == RB_OK && rt_st_count(st) == 0);
  rt_st_close(st);
  /* Scalars, empty tensors sharing an offset, a hole, trailing data bytes,
   * unknown keys: the reference reader takes all of these. */
  CHECK(opens("{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
              "\"e1\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[4,4]},"
              "\"e2\":{\"dtype\":\"I64\",\"shape\":[3,0,2],\"data_offsets\":[4,4]},"
              "\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12],\"extra\":[1]}}",
              d, 20, &st) == RB_OK);
  if (st) {
    CHECK(rt_st_count(st) == 4);
    const RtTensor *s = rt_st_find(st, "s"), *x = rt_st_find(st, "x");
    CHECK(s && s->rank == 0 && s->nbytes == 4 && memcmp(s->data, d, 4) == 0);
    CHECK(x && x->nbytes == 4 && memcmp(x->data, d + 8, 4) == 0);
    CHECK(rt_st_find(st, "e2") && rt_st_find(st, "e2")->nbytes == 0);
  }
  rt_st_close(st);
  /* A zero dimension next to huge ones: the product is 0, not an overflow. */
  CHECK(opens("{\"z\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}",
              NULL, 0, &st) == RB_OK);
  rt_st_close(st);
}

/* ---- corrupt: each damaged file fails with its own message ---- */

static const char *T1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";

typedef struct {
  const char *name, *json; /* json NULL: the case builds its file itself */
  size_t dlen;
  const char *want;
} Corrupt;

static const Corrupt corrupt[] = {
    {"bad_json", "{\"a\":{\"dtype\":\"F32\",", 0, "header is not valid JSON"},
    {"trailing_json", "{} {}", 0, "trailing bytes after the header JSON"},
    {"not_object", "[1,2]", 0, "header is not a JSON object"},
    {"entry_not_object", "{\"a\":3}", 0, "tensor 'a': entry is not a JSON object"},
    {"wrong_dtype", "{\"a\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16,
     "tensor 'a': unknown dtype \"F128\""},
    {"dtype_not_string", "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "tensor 'a': dtype is not a string"},
    {"missing_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "tensor 'a': missing \"data_offsets\""},
    {"dup_key", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "tensor 'a': duplicate key \"dtype\""},
    {"shape_not_array", "{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
     "tensor 'a': shape is not an array"},
    {"shape_float", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
     "shape[0] is not an integer"},
    {"shape_string", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
     "shape[0] is not a number"},
    {"negative_dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8,
     "tensor 'a': shape[1] is negative"},
    {"rank", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
     "rank 5 exceeds the maximum of 4"},
    {"size_mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
     "size mismatch: shape [2, 3] of F32 needs 24 bytes, data_offsets give 20"},
    {"offsets_oob", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 16,
     "data_offsets [8, 24] beyond the data section (16 bytes"},
    {"offsets_reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 16,
     "data_offsets begin 8 > end 4"},
    {"offsets_one", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 16,
     "data_offsets is not an array of two integers"},
    {"offsets_three", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 16,
     "data_offsets is not an array of two integers"},
    {"offsets_negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 16,
     "data_offsets: an offset is negative"},
    {"offsets_huge", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,0]}}", 16,
     "an offset is too large"},
    {"overlap",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
     24, "tensors 'a' and 'b' overlap (data_offsets [0, 16] and [8, 24])"},
    {"overlap_inside", /* b lies inside a, after c: a naive neighbour check misses it */
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[32],\"data_offsets\":[0,32]},"
     "\"c\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
     "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[16,20]}}",
     32, "tensors 'a' and 'c' overlap"},
    {"overlap_far",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[32],\"data_offsets\":[0,32]},"
     "\"c\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},"
     "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[28,32]}}",
     32, "tensors 'a' and 'b' overlap"},
    {"duplicate_name",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, "tensor 'a': duplicate tensor name"},
    {"duplicate_meta", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate name \"__metadata__\""},
    {"duplicate_meta_key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate __metadata__ key 'k'"},
    {"meta_not_string", "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value of 'k' is not a string"},
    {"meta_not_object", "{\"__metadata__\":[\"k\"]}", 0, "__metadata__ is not a JSON object"},
    {"overflow_product", /* 2^32 * 2^32 wraps to exactly 0 in 64 bits */
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
     "shape [4294967296, 4294967296] of U8 overflows a 64-bit byte count"},
    {"overflow_bytes", /* elements fit, bytes do not */
     "{\"a\":{\"dtype\":\"I64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}", 0,
     "shape[0] is too large"},
    {"overflow_dtype",
     "{\"a\":{\"dtype\":\"I64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,0]}}", 0,
     "of I64 overflows a 64-bit byte count"},
    {"bad_utf8", "{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "header is not valid UTF-8 (at header byte 3)"},
    /* built by hand below */
    {"empty_file", NULL, 0, "file is 0 bytes, shorter than the 8-byte header length"},
    {"trunc_5", NULL, 0, "file is 5 bytes, shorter than the 8-byte header length"},
    {"trunc_header", NULL, 0, "runs past the end of the file"},
    {"trunc_data", NULL, 0, "tensor 'a': data_offsets [0, 16] beyond the data section (9 bytes"},
    {"trunc_last_byte", NULL, 0, "tensor 'a': data_offsets [0, 16] beyond the data section (15 bytes"},
    {"header_len_huge", NULL, 0, "header length 9223372036854775808 runs past the end of the file"},
    {"header_len_absurd", NULL, 0, "header length 100000001 is absurd"},
    {"directory", NULL, 0, "not a regular file"},
    {"missing_file", NULL, 0, "cannot open: No such file or directory"},
};
enum { NCORRUPT = sizeof corrupt / sizeof corrupt[0] };

static int test_corrupt(const char *name) {
  const Corrupt *c = NULL;
  for (int i = 0; i < NCORRUPT; i++)
    if (!strcmp(corrupt[i].name, name)) c = &corrupt[i];
  if (!c) {
    printf("unknown corrupt case %s\n", name);
    return 1;
  }
  char fname[256];
  snprintf(fname, sizeof fname, "corrupt_%s.safetensors", name);
  const char *path = path_in(fname);
  static unsigned char file[1 << 16];
  unsigned char d[64];
  fill_random(d, sizeof d);
  size_t full = image(file, T1, d, 16), n = 0;
  if (c->json) n = image(file, c->json, d, c->dlen);
  else if (!strcmp(name, "empty_file")) n = 0;
  else if (!strcmp(name, "trunc_5")) n = 5;
  else if (!strcmp(name, "trunc_header")) n = 8 + strlen(T1) / 2;
  else if (!strcmp(name, "trunc_data")) n = full - 7;
  else if (!strcmp(name, "trunc_last_byte")) n = full - 1;
  else if (!strcmp(name, "header_len_huge")) {
    n = full;
    memcpy(file, (const unsigned char[8]){0, 0, 0, 0, 0, 0, 0, 0x80}, 8); /* 2^63 */
  }
  if (!strcmp(name, "header_len_absurd")) {
    /* A sparse file past 100 MB, so only the limit can refuse it. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    unsigned char len[8] = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0}; /* 100000001 */
    CHECK(fd >= 0 && write(fd, len, 8) == 8 && ftruncate(fd, 200000000) == 0);
    if (fd >= 0) close(fd);
  } else if (!strcmp(name, "directory")) {
    mkdir(path, 0755);
  } else if (!strcmp(name, "missing_file")) {
    unlink(path);
  } else {
    CHECK(write_bytes(path, file, n) == 0);
  }

  RtSafetensors *st = NULL;
  RbBuf err = {0};
  int rc = rt_st_open(path, &st, &err);
  CHECK(rc == RB_EUSER);
  CHECK(st == NULL);
  char want[1024];
  snprintf(want, sizeof want, "%s: error: ", path);
  CHECK(err.data && strncmp(err.data, want, strlen(want)) == 0); /* names the file */
  CHECK(err.data && strstr(err.data, c->want));
  printf("%s\n", err.data ? err.data : "(no message)");
  /* The same image from memory gives the same message (the fuzzer's path). */
  if (c->json || n) {
    RbBuf err2 = {0};
    CHECK(rt_st_open_memory(file, n, "mem", &st, &err2) == RB_EUSER && st == NULL);
    CHECK(err2.data && strstr(err2.data, c->want));
    rb_buf_free(&err2);
  }
  rt_st_close(st);
  rb_buf_free(&err);
  if (!strcmp(name, "directory")) rmdir(path);
  else unlink(path);
  return 0;
}

/* ---- writer errors: bad arguments and failing file systems ---- */

static void expect_finish_fails(RtStWriter *w, const char *path, int code, const char *want) {
  RbBuf err = {0};
  int rc = rt_st_writer_finish(w, path, &err);
  CHECK(rc == code);
  CHECK(err.data && strstr(err.data, path) && strstr(err.data, want));
  printf("%s\n", err.data ? err.data : "(no message)");
  struct stat sb;
  CHECK(stat(path, &sb) != 0 || S_ISDIR(sb.st_mode)); /* no file left behind */
  CHECK(temp_files() == 0);
  rb_buf_free(&err);
}

static void test_writer_errors(void) {
  float x[4] = {1, 2, 3, 4};
  const char *path = path_in("writer_errors.safetensors");
  unlink(path);
  RtStWriter *w;

  rt_st_writer_new(&w);
  CHECK(rt_st_writer_add(w, "a", RT_F32, 1, (const int64_t[]){4}, x) == RB_OK);
  CHECK(rt_st_writer_add(w, "a", RT_F32, 1, (const int64_t[]){4}, x) == RB_EUSER);
  CHECK(rt_st_writer_add(w, "b", RT_F32, 1, (const int64_t[]){4}, x) == RB_OK);
  expect_finish_fails(w, path, RB_EUSER, "duplicate tensor name 'a'");

  struct {
    const char *name;
    RtDtype dt;
    int rank;
    int64_t shape[RT_MAX_DIMS + 1];
    const void *data;
    const char *want;
  } bad[] = {
      {"__metadata__", RT_F32, 1, {4}, x, "reserved"},
      {"r", RT_F32, 5, {1, 1, 1, 1, 4}, x, "rank 5 is not 0..4"},
      {"n", RT_F32, 1, {-4}, x, "dimension 0 is -4"},
      {"u", (RtDtype)99, 1, {4}, x, "bad dtype 99"},
      {"\xc3(", RT_F32, 1, {4}, x, "not valid UTF-8"},
      {"nodata", RT_F32, 1, {4}, NULL, "no data"},
      {"huge", RT_F32, 2, {1ll << 40, 1ll << 40}, x, "too large"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rt_st_writer_new(&w);
    CHECK(rt_st_writer_add(w, bad[i].name, bad[i].dt, bad[i].rank, bad[i].shape, bad[i].data) == RB_EUSER);
    expect_finish_fails(w, path, RB_EUSER, bad[i].want);
  }
  rt_st_writer_new(&w);
  CHECK(rt_st_writer_meta(w, "k", "\xff") == RB_EUSER);
  expect_finish_fails(w, path, RB_EUSER, "metadata 'k' is not valid UTF-8");

  /* A directory that does not exist. */
  rt_st_writer_new(&w);
  rt_st_writer_add(w, "a", RT_F32, 1, (const int64_t[]){4}, x);
  expect_finish_fails(w, path_in("no/such/dir/w.safetensors"), RB_EUSER,
                      "cannot create temp file: No such file or directory");

  /* The target is a directory: rename fails after the data is written. */
  const char *d = path_in("writer_target_dir");
  mkdir(d, 0755);
  rt_st_writer_new(&w);
  rt_st_writer_add(w, "a", RT_F32, 1, (const int64_t[]){4}, x);
  expect_finish_fails(w, d, RB_EINTERNAL, "cannot rename temp file into place: Is a directory");
  rmdir(d);

  /* A full disk, simulated by a file size limit (EFBIG; ENOSPC takes the
   * same path): the write fails midway and the temp file must go. */
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 4096;
  signal(SIGXFSZ, SIG_IGN); /* else the process dies instead of seeing EFBIG */
  size_t big = 1 << 20;
  unsigned char *buf = malloc(big);
  fill_random(buf, big);
  rt_st_writer_new(&w);
  rt_st_writer_add(w, "big", RT_U8, 1, (const int64_t[]){(int64_t)big}, buf);
  CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  expect_finish_fails(w, path, RB_EINTERNAL, "cannot write: File too large");
  setrlimit(RLIMIT_FSIZE, &old);
  free(buf);

  /* NULL and misuse do not crash. */
  RbBuf err = {0};
  CHECK(rt_st_writer_add(NULL, "a", RT_F32, 1, (const int64_t[]){4}, x) == RB_EINTERNAL);
  CHECK(rt_st_writer_finish(NULL, path, &err) == RB_EINTERNAL);
  rt_st_writer_free(NULL);
  rt_st_close(NULL);
  rb_buf_free(&err);
}

/* ---- alloc_fail: every allocation failing in turn is reported, never a
 * crash or a leak (ASan's leak check runs at exit) ---- */

static int write_and_read(const char *path) {
  float x[6];
  fill_random(x, sizeof x);
  RtStWriter *w = NULL;
  RbBuf err = {0};
  if (rt_st_writer_new(&w) != RB_OK) return 1;
  rt_st_writer_meta(w, "format", "1");
  rt_st_writer_meta(w, "model", "m");
  for (int i = 0; i < 20; i++) {
    char name[32];
    snprintf(name, sizeof name, "t%d", i);
    rt_st_writer_add(w, name, RT_F32, 2, (const int64_t[]){2, 3}, x);
  }
  int rc = rt_st_writer_finish(w, path, &err);
  RtSafetensors *st = NULL;
  if (rc == RB_OK) rc = rt_st_open(path, &st, &err);
  if (rc == RB_OK && (rt_st_count(st) != 20 || !rt_st_find(st, "t19") || !rt_st_meta(st, "model"))) rc = 99;
  if (rc != RB_OK && rc != 99 && (!err.data || !strstr(err.data, path))) {
    /* OOM while formatting the message itself leaves err empty: allowed. */
    if (!err.oom && err.data) rc = 98;
  }
  rt_st_close(st);
  rb_buf_free(&err);
  return rc;
}

static void test_alloc_fail(void) {
  const char *path = path_in("alloc_fail.safetensors");
  int ok = 0;
  for (long k = 0; k < 100000 && !ok; k++) {
    unlink(path);
    rb_alloc_fail_after = k;
    int rc = write_and_read(path);
    rb_alloc_fail_after = -1;
    CHECK(rc != 99 && rc != 98);
    if (rc == RB_OK) {
      ok = 1;
      printf("succeeds from %ld allowed allocations on\n", k);
    }
    CHECK(temp_files() == 0);
  }
  CHECK(ok);
}

/* ---- large: a tensor of hundreds of MB goes through whole ---- */

static void test_large(void) {
  size_t n = (size_t)300 << 20;
  unsigned char *big = malloc(n);
  CHECK(big != NULL);
  if (!big) return;
  fill_random(big, 1 << 20);
  for (size_t off = 1 << 20; off < n; off += 1 << 20) { /* cheap but not periodic */
    memcpy(big + off, big, 1 << 20);
    big[off] ^= (unsigned char)(off >> 20);
  }
  float small[3] = {1, -2, 3};
  const char *path = path_in("large.safetensors");
  RtStWriter *w = NULL;
  RbBuf err = {0};
  rt_st_writer_new(&w);
  CHECK(rt_st_writer_add(w, "head", RT_F32, 1, (const int64_t[]){3}, small) == RB_OK);
  CHECK(rt_st_writer_add(w, "big", RT_U8, 3, (const int64_t[]){300, 1024, 1024}, big) == RB_OK);
  CHECK(rt_st_writer_add(w, "tail", RT_F32, 1, (const int64_t[]){3}, small) == RB_OK);
  int rc = rt_st_writer_finish(w, path, &err);
  CHECK(rc == RB_OK);
  RtSafetensors *st = NULL;
  if (rc == RB_OK) rc = rt_st_open(path, &st, &err);
  CHECK(rc == RB_OK);
  if (rc) printf("%s\n", err.data);
  if (st) {
    const RtTensor *t = rt_st_find(st, "big"), *tail = rt_st_find(st, "tail");
    CHECK(t && t->nbytes == n && memcmp(t->data, big, n) == 0);
    CHECK(tail && memcmp(tail->data, small, sizeof small) == 0);
  }
  rt_st_close(st);
  unlink(path);
  free(big);
  rb_buf_free(&err);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    printf("usage: test_st <scratch dir> <case> [corrupt case]\n");
    return 2;
  }
  /* A directory per case: ctest runs cases in parallel, and temp_files()
   * must see only this case's writer. */
  static char own[4096];
  mkdir(argv[1], 0755);
  snprintf(own, sizeof own, "%s/%s%s%s", argv[1], argv[2], argc > 3 ? "_" : "", argc > 3 ? argv[3] : "");
  mkdir(own, 0755);
  dir = own;
  rng = (unsigned long long)time(NULL) * 2654435761ull ^ (unsigned long long)getpid();
  if (!rng) rng = 1;
  printf("seed %llu\n", rng);
  const char *c = argv[2];
  if (!strcmp(c, "roundtrip")) test_roundtrip();
  else if (!strcmp(c, "handbuilt")) test_handbuilt();
  else if (!strcmp(c, "accept")) test_accept();
  else if (!strcmp(c, "writer_errors")) test_writer_errors();
  else if (!strcmp(c, "alloc_fail")) test_alloc_fail();
  else if (!strcmp(c, "large")) test_large();
  else if (!strcmp(c, "corrupt") && argc > 3) {
    if (test_corrupt(argv[3])) return 2;
  } else if (!strcmp(c, "list_corrupt")) {
    for (int i = 0; i < NCORRUPT; i++) printf("%s\n", corrupt[i].name);
  } else {
    printf("unknown case %s\n", c);
    return 2;
  }
  if (failures) printf("%d checks failed\n", failures);
  return failures ? 1 : 0;
}
