/* tokenizer.c: byte-level BPE as Hugging Face `tokenizers` runs it for
 * SmolLM2 (and GPT-2-style GGUF models): added tokens cut out first, a PCRE2
 * pre-split, GPT-2's bytes-to-unicode symbols, then merges by rank with a
 * priority queue per pre-token, so long texts stay linear in their length. */
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/text.h"

/* GGUF token types that HF loads as added tokens, matched before the split. */
enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER = 4 };
/* GGUF value type of string arrays. */
enum { GGUF_T_STRING = 8 };

/* Pre-tokenizer chains we know. DIGITS_GPT2 is HF's
 * Sequence[Digits(individual_digits), ByteLevel(use_regex)]: every \p{N}
 * stands alone and the GPT-2 regex runs on each stretch between digits. */
enum { PRE_GPT2, PRE_DIGITS_GPT2 };

/* The GPT-2 regex as HF's ByteLevel writes it,
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \s spelled out: HF runs it in Oniguruma, whose Unicode \s is
 * 9-D, 85 and \p{Z}, while PCRE2's \s (\h, \v) also takes U+180E. \x0b not
 * \v, which inside a PCRE2 class means all vertical space. */
#define WS "\\t\\n\\x0b\\f\\r\\x{85}\\p{Z}"
static const char RE_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
                              "|[" WS "]+(?![^" WS "])|[" WS "]+";
static const char RE_DIGIT[] = "\\p{N}";

typedef struct {
  uint32_t rank;
  int32_t result;
} MergeVal;

struct RtTokenizer {
  int ntok, bos, eos, pre;
  char *blob;           /* every token's text, NUL-terminated */
  uint32_t *off, *len;  /* (ntok) into blob */
  int32_t *type;        /* (ntok) */
  uint8_t *dec;         /* every token's decoded bytes */
  uint32_t *dec_off;    /* (ntok + 1) into dec */
  RbMap vocab;          /* text -> id; keys point into blob */
  uint64_t *mkey;       /* merge table: (left << 32 | right) -> MergeVal, open addressing */
  MergeVal *mval;
  size_t mcap;
  int32_t byte_id[256]; /* id of each byte's one-symbol token, -1 if absent */
  int32_t *special;     /* added-token ids, longest first within each first byte */
  int nspecial;
  int first_special[257]; /* special[first_special[b] .. first_special[b+1]) start with byte b */
  pcre2_general_context *gctx;
  pcre2_code *re_main, *re_digit;
};

/* ---- allocation: PCRE2 allocates through rb_malloc like everything else ---- */

static void *pcre_alloc(size_t n, void *ud) { return rb_malloc(n); }
static void pcre_free(void *p, void *ud) { rb_free(p); }

/* ---- GPT-2 bytes-to-unicode ---- */

/* The code point GPT-2 shows byte b as: printable Latin-1 stays itself, the
 * rest (controls, space, soft hyphen...) move to 256.. in byte order. */
static int byte_to_cp(int b) {
  if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
  int n = 0;
  for (int c = 0; c < b; c++)
    if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
  return 256 + n;
}

static int utf8_put(uint32_t cp, char *o) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Length of the well-formed UTF-8 character at s (at most n bytes) with its
 * code point in *cp, or 0 when s does not start one. */
static int utf8_get(const uint8_t *s, size_t n, uint32_t *cp) {
  if (n == 0) return 0;
  uint8_t c = s[0];
  int k;
  uint32_t v, min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    k = 2, v = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    k = 3, v = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    k = 4, v = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if ((size_t)k > n) return 0;
  for (int i = 1; i < k; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (s[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return k;
}

/* ---- the merge table ---- */

static size_t merge_slot(const RtTokenizer *t, uint64_t key) {
  return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (t->mcap - 1);
}

/* The merge of (a, b), or NULL. Keys are never all-ones: ids are below 2^31. */
static const MergeVal *merge_get(const RtTokenizer *t, int32_t a, int32_t b) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  for (size_t i = merge_slot(t, key);; i = (i + 1) & (t->mcap - 1)) {
    if (t->mkey[i] == UINT64_MAX) return NULL;
    if (t->mkey[i] == key) return &t->mval[i];
  }
}

/* Insert or overwrite: a repeated merge takes its later rank, as the HashMap
 * HF collects the merge list into does. */
static void merge_put(RtTokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t result) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  size_t i = merge_slot(t, key);
  while (t->mkey[i] != UINT64_MAX && t->mkey[i] != key) i = (i + 1) & (t->mcap - 1);
  t->mkey[i] = key;
  t->mval[i] = (MergeVal){rank, result};
}

/* ---- construction ---- */

static int pre_kind(const char *pre, int *kind) {
  static const char *const digits[] = {"smollm", "starcoder", "refact", "codeshell"};
  static const char *const gpt2[] = {"default", "gpt2", "gpt-2", "mpt", "olmo", "jais"};
  if (!pre) pre = "default";
  for (size_t i = 0; i < sizeof digits / sizeof *digits; i++)
    if (strcmp(pre, digits[i]) == 0) return *kind = PRE_DIGITS_GPT2, 1;
  for (size_t i = 0; i < sizeof gpt2 / sizeof *gpt2; i++)
    if (strcmp(pre, gpt2[i]) == 0) return *kind = PRE_GPT2, 1;
  return 0;
}

static int compile_re(RtTokenizer *t, const char *pat, pcre2_code **out, RbBuf *err) {
  pcre2_compile_context *cc = pcre2_compile_context_create(t->gctx);
  if (!cc) return RB_EINTERNAL;
  int ec;
  PCRE2_SIZE eoff;
  /* MATCH_INVALID_UTF: text may be any bytes; what is not UTF-8 never matches
   * and falls into the gaps between matches. */
  *out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eoff, cc);
  pcre2_compile_context_free(cc);
  if (!*out) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(ec, msg, sizeof msg);
    if (err) rb_buf_printf(err, "tokenizer: PCRE2 rejects the pre-tokenizer regex at %zu: %s\n",
                           (size_t)eoff, (const char *)msg);
    return RB_EINTERNAL;
  }
  /* JIT is a speed-up only: without it (no JIT support) the interpreter runs. */
  (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
  return RB_OK;
}

/* Decode one token's stored text: each character GPT-2's table knows gives
 * its byte; any other (an added token's text) passes through as UTF-8, as
 * HF's ByteLevel decoder does. */
static size_t token_bytes(const int16_t *cp_byte, const char *s, size_t n, uint8_t *o) {
  size_t k = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int l = utf8_get((const uint8_t *)s + i, n - i, &cp);
    if (l == 0) { /* stored text that is not UTF-8: keep the byte */
      o[k++] = (uint8_t)s[i++];
      continue;
    }
    if (cp < 324 && cp_byte[cp] >= 0) {
      o[k++] = (uint8_t)cp_byte[cp];
    } else {
      memcpy(o + k, s + i, (size_t)l);
      k += (size_t)l;
    }
    i += (size_t)l;
  }
  return k;
}

/* Added tokens sort by first byte, then longest first, so the first that
 * matches at a position is the longest (HF matches leftmost-longest). */
typedef struct {
  uint8_t first;
  uint32_t len;
  int32_t id;
} SpecialKey;

static int cmp_special(const void *a, const void *b) {
  const SpecialKey *x = a, *y = b;
  if (x->first != y->first) return x->first < y->first ? -1 : 1;
  if (x->len != y->len) return x->len > y->len ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* The merge table from "left right" strings, split at the first space after
 * the first byte (llama.cpp's rule; byte-level symbols never hold a real
 * space). A merge naming no token is an error, as it is for HF. */
static int load_merges(RtTokenizer *t, const RtTokVocab *v, RbBuf *err) {
  t->mcap = 64;
  while (t->mcap < (size_t)v->nmerges * 2) t->mcap *= 2;
  t->mkey = rb_malloc(t->mcap * sizeof *t->mkey);
  t->mval = rb_malloc(t->mcap * sizeof *t->mval);
  if (!t->mkey || !t->mval) return RB_EINTERNAL;
  memset(t->mkey, 0xff, t->mcap * sizeof *t->mkey);
  char *scratch = NULL;
  size_t scap = 0;
  int rc = RB_OK;
  for (int r = 0; r < v->nmerges && rc == RB_OK; r++) {
    const char *m = v->merges[r];
    size_t ml = v->merge_lens[r];
    const char *sp = ml > 1 ? memchr(m + 1, ' ', ml - 1) : NULL;
    if (!sp) {
      if (err) rb_buf_printf(err, "tokenizer: merge %d '%.*s' is not two tokens split by a space\n", r, (int)ml, m);
      rc = RB_EUSER;
      break;
    }
    if (ml + 1 > scap) {
      char *ns = rb_realloc(scratch, ml + 1);
      if (!ns) {
        rc = RB_EINTERNAL;
        break;
      }
      scratch = ns, scap = ml + 1;
    }
    /* scratch holds "left", then "right", then "leftright", NUL-terminated for the map. */
    size_t la = (size_t)(sp - m), lb = ml - la - 1;
    int a, b, ab;
    memcpy(scratch, m, la);
    scratch[la] = 0;
    int ok = rb_map_get(&t->vocab, scratch, &a);
    memcpy(scratch, sp + 1, lb);
    scratch[lb] = 0;
    ok = ok && rb_map_get(&t->vocab, scratch, &b);
    memcpy(scratch, m, la);
    memcpy(scratch + la, sp + 1, lb);
    scratch[la + lb] = 0;
    ok = ok && rb_map_get(&t->vocab, scratch, &ab);
    if (!ok) {
      if (err) rb_buf_printf(err, "tokenizer: merge %d '%.*s' names a token that is not in the vocabulary\n", r,
                             (int)ml, m);
      rc = RB_EUSER;
      break;
    }
    merge_put(t, a, b, (uint32_t)r, ab);
  }
  rb_free(scratch);
  return rc;
}

int rt_tok_create(const RtTokVocab *v, RtTokenizer **out, RbBuf *err) {
  *out = NULL;
  if (!v->model || strcmp(v->model, "gpt2") != 0) {
    if (err) rb_buf_printf(err, "tokenizer: model '%s' is not supported: only 'gpt2' (byte-level BPE) is\n",
                           v->model ? v->model : "(none)");
    return RB_EUSER;
  }
  int kind;
  if (!pre_kind(v->pre, &kind)) {
    if (err) rb_buf_printf(err, "tokenizer: pre-tokenizer '%s' is not supported (known: smollm, starcoder, "
                           "refact, codeshell, gpt2, default, mpt, olmo, jais)\n", v->pre);
    return RB_EUSER;
  }
  if (v->ntokens <= 0 || v->nmerges < 0) {
    if (err) rb_buf_printf(err, "tokenizer: the vocabulary is empty\n");
    return RB_EUSER;
  }
  if (v->bos >= v->ntokens || v->eos >= v->ntokens) {
    if (err) rb_buf_printf(err, "tokenizer: bos %d / eos %d out of range for %d tokens\n", v->bos, v->eos,
                           v->ntokens);
    return RB_EUSER;
  }
  RtTokenizer *t = rb_calloc(1, sizeof *t);
  if (!t) return RB_EINTERNAL;
  int rc = RB_EINTERNAL;
  int n = t->ntok = v->ntokens;
  t->bos = v->bos < 0 ? -1 : v->bos;
  t->eos = v->eos < 0 ? -1 : v->eos;
  t->pre = kind;

  size_t total = 0;
  for (int i = 0; i < n; i++) total += v->token_lens[i] + 1;
  if (total > UINT32_MAX) { /* offsets are 32-bit */
    if (err) rb_buf_printf(err, "tokenizer: the vocabulary's text is over 4 GiB\n");
    rc = RB_EUSER;
    goto fail;
  }
  t->blob = rb_malloc(total);
  t->dec = rb_malloc(total); /* a token's bytes never outnumber its text's */
  t->off = rb_malloc(n * sizeof *t->off);
  t->len = rb_malloc(n * sizeof *t->len);
  t->type = rb_malloc(n * sizeof *t->type);
  t->dec_off = rb_malloc((n + 1) * sizeof *t->dec_off);
  t->special = rb_malloc(n * sizeof *t->special);
  if (!t->blob || !t->dec || !t->off || !t->len || !t->type || !t->dec_off || !t->special) goto fail;

  int16_t cp_byte[324];
  memset(cp_byte, 0xff, sizeof cp_byte);
  for (int b = 0; b < 256; b++) cp_byte[byte_to_cp(b)] = (int16_t)b;

  size_t pos = 0, dpos = 0;
  for (int i = 0; i < n; i++) {
    const char *s = v->tokens[i];
    size_t l = v->token_lens[i];
    if (memchr(s, 0, l)) {
      if (err) rb_buf_printf(err, "tokenizer: token %d contains a NUL byte\n", i);
      rc = RB_EUSER;
      goto fail;
    }
    t->off[i] = (uint32_t)pos;
    t->len[i] = (uint32_t)l;
    memcpy(t->blob + pos, s, l);
    t->blob[pos + l] = 0;
    pos += l + 1;
    t->type[i] = v->token_types ? v->token_types[i] : TT_NORMAL;
    t->dec_off[i] = (uint32_t)dpos;
    dpos += token_bytes(cp_byte, s, l, t->dec + dpos);
    if (rb_map_put(&t->vocab, t->blob + t->off[i], i) != RB_OK) goto fail;
  }
  t->dec_off[n] = (uint32_t)dpos;

  for (int b = 0; b < 256; b++) {
    char sym[5];
    sym[utf8_put((uint32_t)byte_to_cp(b), sym)] = 0;
    int id;
    t->byte_id[b] = rb_map_get(&t->vocab, sym, &id) ? id : -1;
  }

  /* Added tokens, grouped by first byte for the scan in rt_tok_encode. */
  for (int i = 0; i < n; i++)
    if ((t->type[i] == TT_CONTROL || t->type[i] == TT_USER) && t->len[i] > 0) t->nspecial++;
  SpecialKey *keys = rb_malloc((t->nspecial ? t->nspecial : 1) * sizeof *keys);
  if (!keys) goto fail;
  for (int i = 0, k = 0; i < n; i++)
    if ((t->type[i] == TT_CONTROL || t->type[i] == TT_USER) && t->len[i] > 0)
      keys[k++] = (SpecialKey){(uint8_t)t->blob[t->off[i]], t->len[i], i};
  qsort(keys, (size_t)t->nspecial, sizeof *keys, cmp_special);
  for (int k = 0; k < t->nspecial; k++) t->special[k] = keys[k].id;
  for (int b = 0, k = 0; b <= 256; b++) {
    while (k < t->nspecial && keys[k].first < b) k++;
    t->first_special[b] = k;
  }
  rb_free(keys);

  if ((rc = load_merges(t, v, err)) != RB_OK) goto fail;
  rc = RB_EINTERNAL;

  t->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
  if (!t->gctx) goto fail;
  if ((rc = compile_re(t, RE_GPT2, &t->re_main, err)) != RB_OK) goto fail;
  if ((rc = compile_re(t, RE_DIGIT, &t->re_digit, err)) != RB_OK) goto fail;
  *out = t;
  return RB_OK;
fail:
  rt_tok_free(t);
  return rc;
}

void rt_tok_free(RtTokenizer *t) {
  if (!t) return;
  pcre2_code_free(t->re_main);
  pcre2_code_free(t->re_digit);
  pcre2_general_context_free(t->gctx);
  rb_map_free(&t->vocab);
  rb_free(t->blob);
  rb_free(t->dec);
  rb_free(t->off);
  rb_free(t->len);
  rb_free(t->type);
  rb_free(t->dec_off);
  rb_free(t->special);
  rb_free(t->mkey);
  rb_free(t->mval);
  rb_free(t);
}

int rt_tok_vocab(const RtTokenizer *t) { return t->ntok; }
int rt_tok_bos(const RtTokenizer *t) { return t->bos; }
int rt_tok_eos(const RtTokenizer *t) { return t->eos; }

int rt_tok_find(const RtTokenizer *t, const char *piece) {
  int id;
  return rb_map_get(&t->vocab, piece, &id) ? id : -1;
}

const char *rt_tok_piece(const RtTokenizer *t, int id, size_t *len) {
  if (id < 0 || id >= t->ntok) return NULL;
  if (len) *len = t->len[id];
  return t->blob + t->off[id];
}

/* ---- from GGUF ---- */

/* A string array's elements, pointing into the mapped file. */
static int gguf_strings(const RtGguf *g, const char *key, int required, const char ***s, size_t **l, int *n,
                        RbBuf *err) {
  int et;
  uint64_t cnt;
  *s = NULL, *l = NULL, *n = 0;
  if (!rt_gguf_arr(g, key, &et, &cnt)) {
    if (!required) return RB_OK;
    if (err) rb_buf_printf(err, "tokenizer: the GGUF has no metadata key '%s'\n", key);
    return RB_EUSER;
  }
  if (et != GGUF_T_STRING || cnt > INT32_MAX) {
    if (err) rb_buf_printf(err, "tokenizer: GGUF key '%s' is not an array of strings\n", key);
    return RB_EUSER;
  }
  *s = rb_malloc((cnt ? cnt : 1) * sizeof **s);
  *l = rb_malloc((cnt ? cnt : 1) * sizeof **l);
  if (!*s || !*l) return RB_EINTERNAL;
  for (uint64_t i = 0; i < cnt; i++) {
    if (!rt_gguf_arr_str(g, key, i, &(*s)[i], &(*l)[i])) {
      if (err) rb_buf_printf(err, "tokenizer: GGUF key '%s' element %llu is unreadable\n", key,
                             (unsigned long long)i);
      return RB_EUSER;
    }
  }
  *n = (int)cnt;
  return RB_OK;
}

/* A GGUF string as a NUL-terminated copy (the file's strings are not). */
static int gguf_cstr(const RtGguf *g, const char *key, int required, char **out, RbBuf *err) {
  const char *s;
  size_t l;
  *out = NULL;
  if (!rt_gguf_str(g, key, &s, &l)) {
    if (!required) return RB_OK;
    if (err) rb_buf_printf(err, "tokenizer: the GGUF has no string metadata key '%s'\n", key);
    return RB_EUSER;
  }
  if (!(*out = rb_malloc(l + 1))) return RB_EINTERNAL;
  memcpy(*out, s, l);
  (*out)[l] = 0;
  return RB_OK;
}

/* The arrays of a GGUF's tokenizer metadata, gathered into a vocabulary; the
 * pointers it holds are freed by vocab_release. */
static int vocab_from_gguf(const RtGguf *g, RtTokVocab *v, RbBuf *err) {
  const char **toks = NULL, **merges = NULL;
  size_t *tlen = NULL, *mlen = NULL;
  int32_t *types = NULL;
  char *model = NULL, *pre = NULL;
  memset(v, 0, sizeof *v);
  int rc = gguf_cstr(g, "tokenizer.ggml.model", 1, &model, err);
  if (!rc) rc = gguf_cstr(g, "tokenizer.ggml.pre", 0, &pre, err);
  if (!rc) rc = gguf_strings(g, "tokenizer.ggml.tokens", 1, &toks, &tlen, &v->ntokens, err);
  if (!rc) rc = gguf_strings(g, "tokenizer.ggml.merges", 1, &merges, &mlen, &v->nmerges, err);
  if (!rc) {
    int et;
    uint64_t cnt;
    if (rt_gguf_arr(g, "tokenizer.ggml.token_type", &et, &cnt)) {
      if (cnt != (uint64_t)v->ntokens) {
        if (err) rb_buf_printf(err, "tokenizer: tokenizer.ggml.token_type has %llu entries for %d tokens\n",
                               (unsigned long long)cnt, v->ntokens);
        rc = RB_EUSER;
      } else if (!(types = rb_malloc((cnt ? cnt : 1) * sizeof *types))) {
        rc = RB_EINTERNAL;
      }
      for (uint64_t i = 0; !rc && i < cnt; i++) {
        int64_t x;
        if (!rt_gguf_arr_i64(g, "tokenizer.ggml.token_type", i, &x)) {
          if (err) rb_buf_printf(err, "tokenizer: tokenizer.ggml.token_type is not an integer array\n");
          rc = RB_EUSER;
        }
        types[i] = (int32_t)x;
      }
    }
  }
  uint64_t x;
  v->bos = !rc && rt_gguf_u64(g, "tokenizer.ggml.bos_token_id", &x) && x < (uint64_t)v->ntokens ? (int)x : -1;
  v->eos = !rc && rt_gguf_u64(g, "tokenizer.ggml.eos_token_id", &x) && x < (uint64_t)v->ntokens ? (int)x : -1;
  v->model = model, v->pre = pre;
  v->tokens = toks, v->token_lens = tlen, v->token_types = types;
  v->merges = merges, v->merge_lens = mlen;
  return rc;
}

static void vocab_release(RtTokVocab *v) {
  rb_free((void *)v->model);
  rb_free((void *)v->pre);
  rb_free((void *)v->tokens);
  rb_free((void *)v->token_lens);
  rb_free((void *)v->merges);
  rb_free((void *)v->merge_lens);
  rb_free((void *)v->token_types);
  memset(v, 0, sizeof *v);
}

int rt_tok_from_gguf(const RtGguf *g, RtTokenizer **out, RbBuf *err) {
  RtTokVocab v;
  *out = NULL;
  int rc = vocab_from_gguf(g, &v, err);
  if (!rc) rc = rt_tok_create(&v, out, err);
  vocab_release(&v);
  return rc;
}

/* One token or merge, escaped the way rt_tok_load_vocab reads it back. */
static void put_escaped(RbBuf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\\') rb_buf_puts(b, "\\\\");
    else if (c == '\t') rb_buf_puts(b, "\\t");
    else if (c == '\n') rb_buf_puts(b, "\\n");
    else if (c == '\r') rb_buf_puts(b, "\\r");
    else if (c == ' ') rb_buf_puts(b, "\\s");
    else if (c < 0x20 || c == 0x7F) rb_buf_printf(b, "\\x%02X", c);
    else rb_buf_put(b, &c, 1);
  }
  rb_buf_puts(b, "\n");
}

int rt_tok_save_vocab(const RtGguf *g, const char *path, RbBuf *err) {
  RtTokVocab v;
  RbBuf b = {0};
  int rc = vocab_from_gguf(g, &v, err);
  if (!rc) {
    rb_buf_printf(&b, "rabit-vocab 1\nmodel %s\npre %s\nbos %d\neos %d\ntokens %d\n", v.model,
                  v.pre ? v.pre : "default", v.bos, v.eos, v.ntokens);
    for (int i = 0; i < v.ntokens; i++) {
      rb_buf_printf(&b, "%d ", v.token_types ? v.token_types[i] : 1);
      put_escaped(&b, v.tokens[i], v.token_lens[i]);
    }
    rb_buf_printf(&b, "merges %d\n", v.nmerges);
    for (int i = 0; i < v.nmerges; i++) put_escaped(&b, v.merges[i], v.merge_lens[i]);
    rc = b.oom ? RB_EINTERNAL : RB_OK;
  }
  if (!rc) {
    RbBuf why = {0};
    const void *part = b.data;
    if ((rc = rb_write_atomic(path, &part, &b.len, 1, &why)))
      rb_buf_printf(err, "cannot write '%s': %s\n", path, why.data ? why.data : "");
    rb_buf_free(&why);
  }
  rb_buf_free(&b);
  vocab_release(&v);
  return rc;
}

/* ---- from the compact vocabulary file ---- */

/* Undo make_reference.py's escape() in place; returns the new length, or -1
 * on a bad escape. */
static long unescape(char *s, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '\\') {
      s[o++] = s[i];
      continue;
    }
    if (++i >= n) return -1;
    switch (s[i]) {
    case '\\': s[o++] = '\\'; break;
    case 't': s[o++] = '\t'; break;
    case 'n': s[o++] = '\n'; break;
    case 'r': s[o++] = '\r'; break;
    case 's': s[o++] = ' '; break;
    case 'x': {
      int v = 0;
      for (int k = 1; k <= 2; k++) {
        char c = i + k < n ? s[i + k] : 0;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
      }
      s[o++] = (char)v;
      i += 2;
      break;
    }
    default: return -1;
    }
  }
  return (long)o;
}

/* Cut the next line off *p, NUL-terminating it in place. NULL at the end. */
static char *next_line(char **p, char *end, size_t *len) {
  if (*p >= end) return NULL;
  char *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));
  char *e = nl ? nl : end;
  *len = (size_t)(e - s);
  if (nl) *nl = 0;
  *p = nl ? nl + 1 : end;
  return s;
}

/* "KEY VALUE" header lines, then a "tokens N" or "merges N" count line. */
static int count_line(const char *path, int lineno, const char *line, const char *key, int *n, RbBuf *err) {
  size_t kl = strlen(key);
  char *end;
  long v = strncmp(line, key, kl) == 0 && line[kl] == ' ' ? strtol(line + kl + 1, &end, 10) : -1;
  if (v < 0 || v > INT32_MAX || *end) {
    if (err) rb_buf_printf(err, "%s:%d: expected '%s COUNT'\n", path, lineno, key);
    return RB_EUSER;
  }
  *n = (int)v;
  return RB_OK;
}

int rt_tok_load_vocab(const char *path, RtTokenizer **out, RbBuf *err) {
  RbBuf file = {0};
  RtTokVocab v = {.bos = -1, .eos = -1};
  const char **toks = NULL, **merges = NULL;
  size_t *tlen = NULL, *mlen = NULL;
  int32_t *types = NULL;
  char model[64] = "", pre[64] = "";
  int rc = RB_EUSER, lineno = 0;
  *out = NULL;
  if (rb_read_file_max(path, RT_TOK_MAX_VOCAB_BYTES, &file) != 0) {
    int e = errno;
    rb_buf_free(&file);
    if (e == ENOMEM) return RB_EINTERNAL;
    char cap[32];
    if (err && e == EFBIG)
      rb_buf_printf(err, "%s: cannot read the vocabulary: it is over %s, the cap on a vocabulary file\n", path,
                    rb_size_str(RT_TOK_MAX_VOCAB_BYTES, cap));
    else if (err) rb_buf_printf(err, "%s: cannot read the vocabulary: %s\n", path, strerror(e));
    return RB_EUSER;
  }
  if (file.oom) {
    rc = RB_EINTERNAL;
    goto done;
  }
  char *p = file.data, *end = file.data + file.len, *line;
  size_t len;
  if (!(line = next_line(&p, end, &len)) || strcmp(line, "rabit-vocab 1") != 0) {
    if (err) rb_buf_printf(err, "%s:1: not a rabit vocabulary (expected 'rabit-vocab 1')\n", path);
    goto done;
  }
  lineno = 1;
  for (;;) { /* header */
    if (!(line = next_line(&p, end, &len))) {
      if (err) rb_buf_printf(err, "%s:%d: the file ends before 'tokens COUNT'\n", path, lineno);
      goto done;
    }
    lineno++;
    if (strncmp(line, "tokens ", 7) == 0) break;
    char key[16];
    char val[64];
    if (sscanf(line, "%15s %63s", key, val) != 2) {
      if (err) rb_buf_printf(err, "%s:%d: expected 'KEY VALUE'\n", path, lineno);
      goto done;
    }
    if (strcmp(key, "model") == 0) snprintf(model, sizeof model, "%s", val);
    else if (strcmp(key, "pre") == 0) snprintf(pre, sizeof pre, "%s", val);
    else if (strcmp(key, "bos") == 0) v.bos = atoi(val);
    else if (strcmp(key, "eos") == 0) v.eos = atoi(val);
    /* other keys: later writers may add some; older readers skip them */
  }
  if (count_line(path, lineno, line, "tokens", &v.ntokens, err)) goto done;
  rc = RB_EINTERNAL;
  size_t nt = v.ntokens ? (size_t)v.ntokens : 1;
  toks = rb_malloc(nt * sizeof *toks);
  tlen = rb_malloc(nt * sizeof *tlen);
  types = rb_malloc(nt * sizeof *types);
  if (!toks || !tlen || !types) goto done;
  rc = RB_EUSER;
  for (int i = 0; i < v.ntokens; i++) {
    if (!(line = next_line(&p, end, &len))) {
      if (err) rb_buf_printf(err, "%s:%d: the file ends after %d of %d tokens\n", path, lineno, i, v.ntokens);
      goto done;
    }
    lineno++;
    char *sp = memchr(line, ' ', len);
    long l = sp ? unescape(sp + 1, len - (size_t)(sp - line) - 1) : -1;
    if (l < 0) {
      if (err) rb_buf_printf(err, "%s:%d: expected 'TYPE ESCAPED-TOKEN'\n", path, lineno);
      goto done;
    }
    types[i] = atoi(line);
    toks[i] = sp + 1;
    tlen[i] = (size_t)l;
  }
  if (!(line = next_line(&p, end, &len))) {
    if (err) rb_buf_printf(err, "%s:%d: the file ends before 'merges COUNT'\n", path, lineno);
    goto done;
  }
  lineno++;
  if (count_line(path, lineno, line, "merges", &v.nmerges, err)) goto done;
  rc = RB_EINTERNAL;
  size_t nm = v.nmerges ? (size_t)v.nmerges : 1;
  merges = rb_malloc(nm * sizeof *merges);
  mlen = rb_malloc(nm * sizeof *mlen);
  if (!merges || !mlen) goto done;
  rc = RB_EUSER;
  for (int i = 0; i < v.nmerges; i++) {
    if (!(line = next_line(&p, end, &len))) {
      if (err) rb_buf_printf(err, "%s:%d: the file ends after %d of %d merges\n", path, lineno, i, v.nmerges);
      goto done;
    }
    lineno++;
    long l = unescape(line, len);
    if (l < 0) {
      if (err) rb_buf_printf(err, "%s:%d: bad escape in a merge\n", path, lineno);
      goto done;
    }
    merges[i] = line;
    mlen[i] = (size_t)l;
  }
  v.model = model, v.pre = pre[0] ? pre : NULL;
  v.tokens = toks, v.token_lens = tlen, v.token_types = types;
  v.merges = merges, v.merge_lens = mlen;
  rc = rt_tok_create(&v, out, err);
done:
  rb_buf_free(&file);
  rb_free(toks);
  rb_free(tlen);
  rb_free(types);
  rb_free(merges);
  rb_free(mlen);
  return rc;
}

/* ---- encode ---- */

/* One symbol of a pre-token being merged; len 0 marks one merged away. */
typedef struct {
  int32_t id, prev, next;
  uint32_t len;
} Sym;

/* A candidate merge of the symbol at pos with its next one. */
typedef struct {
  uint32_t rank, pos;
  int32_t result;
} Cand;

/* Scratch shared by the pre-tokens of one encode call. */
typedef struct {
  const RtTokenizer *t;
  pcre2_match_data *md;
  int32_t *ids;
  size_t n, cap;
  Sym *sym;
  Cand *heap;
  size_t symcap, nheap;
  int rc;
} Enc;

static void emit(Enc *e, int32_t id) {
  if (e->n == e->cap) {
    size_t nc = e->cap * 2;
    int32_t *p = rb_realloc(e->ids, nc * sizeof *p);
    if (!p) {
      e->rc = RB_EINTERNAL;
      return;
    }
    e->ids = p, e->cap = nc;
  }
  e->ids[e->n++] = id;
}

/* Lowest rank first, then leftmost: the order of HF's BinaryHeap<Merge>. */
static int cand_less(Cand a, Cand b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

static void heap_push(Enc *e, Cand c) {
  size_t i = e->nheap++;
  while (i > 0 && cand_less(c, e->heap[(i - 1) / 2])) {
    e->heap[i] = e->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  e->heap[i] = c;
}

static Cand heap_pop(Enc *e) {
  Cand top = e->heap[0], last = e->heap[--e->nheap];
  size_t i = 0, n = e->nheap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && cand_less(e->heap[c + 1], e->heap[c])) c++;
    if (!cand_less(e->heap[c], last)) break;
    e->heap[i] = e->heap[c];
    i = c;
  }
  if (n) e->heap[i] = last;
  return top;
}

static void push_pair(Enc *e, int32_t pos) {
  const Sym *s = e->sym;
  const MergeVal *m = merge_get(e->t, s[pos].id, s[s[pos].next].id);
  if (m) heap_push(e, (Cand){m->rank, (uint32_t)pos, m->result});
}

/* BPE over one pre-token's bytes, as HF's Word::merge_all: bytes whose
 * symbol is not a token are dropped (no unk token), then the lowest-ranked
 * adjacent pair is merged until none is left. A queued candidate is stale
 * when its left symbol is gone, is last, or now pairs into another token. */
static void bpe(Enc *e, const uint8_t *s, size_t n) {
  const RtTokenizer *t = e->t;
  if (e->rc || n == 0) return;
  if (n > e->symcap) {
    size_t nc = n > 2 * e->symcap ? n : 2 * e->symcap;
    Sym *ns = rb_realloc(e->sym, nc * sizeof *ns);
    if (ns) e->sym = ns;
    Cand *nh = rb_realloc(e->heap, 3 * nc * sizeof *nh); /* k-1 initial + 2 per merge */
    if (nh) e->heap = nh;
    if (!ns || !nh) {
      e->rc = RB_EINTERNAL;
      return;
    }
    e->symcap = nc;
  }
  Sym *sym = e->sym;
  int32_t k = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t id = t->byte_id[s[i]];
    if (id < 0) continue;
    sym[k] = (Sym){id, k - 1, k + 1, 1};
    k++;
  }
  if (k == 0) return;
  sym[k - 1].next = -1;
  e->nheap = 0;
  for (int32_t i = 0; i + 1 < k; i++) push_pair(e, i);
  while (e->nheap) {
    Cand c = heap_pop(e);
    Sym *l = &sym[c.pos];
    if (l->len == 0 || l->next < 0) continue;
    Sym *r = &sym[l->next];
    const MergeVal *m = merge_get(t, l->id, r->id);
    if (!m || m->result != c.result) continue;
    l->id = c.result;
    l->len += r->len;
    r->len = 0;
    l->next = r->next;
    if (l->next >= 0) sym[l->next].prev = (int32_t)c.pos;
    if (l->prev >= 0) push_pair(e, l->prev);
    if (l->next >= 0) push_pair(e, (int32_t)c.pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) emit(e, sym[i].id); /* symbol 0 is never merged away */
}

/* The next match of re in s[0..n) at or after pos: 1 with [*a, *b), 0 when
 * none, -1 on an engine error. */
static int next_match(Enc *e, const pcre2_code *re, const uint8_t *s, size_t n, size_t pos, size_t *a,
                      size_t *b) {
  int rc = pcre2_match(re, s, n, pos, 0, e->md, NULL);
  /* JIT's fixed stack is a speed choice, not a limit on input: the
   * interpreter keeps its frames on the heap. */
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = pcre2_match(re, s, n, pos, PCRE2_NO_JIT, e->md, NULL);
  if (rc == PCRE2_ERROR_NOMATCH) return 0;
  if (rc < 0) return -1;
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
  *a = ov[0], *b = ov[1];
  if (*b <= *a) return -1; /* the patterns never match empty; guard the loop anyway */
  return 1;
}

/* The GPT-2 regex over one stretch; the stretch is the whole subject, so
 * \s+(?!\S) sees its end as HF's per-piece split does. Bytes no match covers
 * (invalid UTF-8) form pre-tokens of their own. */
static void split_gpt2(Enc *e, const uint8_t *s, size_t n) {
  size_t pos = 0, a, b;
  while (pos < n && !e->rc) {
    int r = next_match(e, e->t->re_main, s, n, pos, &a, &b);
    if (r < 0) {
      e->rc = RB_EINTERNAL;
      return;
    }
    if (r == 0) a = b = n;
    bpe(e, s + pos, a - pos);
    bpe(e, s + a, b - a);
    pos = b;
  }
}

/* Pre-split text between added tokens, then BPE each piece. */
static void pretokenize(Enc *e, const uint8_t *s, size_t n) {
  if (e->t->pre != PRE_DIGITS_GPT2) {
    split_gpt2(e, s, n);
    return;
  }
  size_t pos = 0, a, b;
  while (pos < n && !e->rc) {
    int r = next_match(e, e->t->re_digit, s, n, pos, &a, &b);
    if (r < 0) {
      e->rc = RB_EINTERNAL;
      return;
    }
    if (r == 0) a = b = n;
    split_gpt2(e, s + pos, a - pos);
    bpe(e, s + a, b - a);
    pos = b;
  }
}

int rt_tok_encode(const RtTokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n) {
  Enc e = {.t = t, .cap = 64};
  *ids = NULL, *n = 0;
  e.ids = rb_malloc(e.cap * sizeof *e.ids);
  /* Match data per call, so one tokenizer serves several threads. */
  e.md = pcre2_match_data_create(1, t->gctx);
  if (!e.ids || !e.md) e.rc = RB_EINTERNAL;
  const uint8_t *s = (const uint8_t *)text;
  size_t start = 0;
  for (size_t i = 0; i < len && !e.rc;) {
    int hit = -1;
    for (int k = t->first_special[s[i]]; k < t->first_special[s[i] + 1]; k++) {
      int32_t id = t->special[k];
      if (t->len[id] <= len - i && memcmp(s + i, t->blob + t->off[id], t->len[id]) == 0) {
        hit = id;
        break;
      }
    }
    if (hit < 0) {
      i++;
      continue;
    }
    pretokenize(&e, s + start, i - start);
    emit(&e, hit);
    i += t->len[hit];
    start = i;
  }
  if (!e.rc) pretokenize(&e, s + start, len - start);
  pcre2_match_data_free(e.md);
  rb_free(e.sym);
  rb_free(e.heap);
  if (e.rc) {
    rb_free(e.ids);
    return e.rc;
  }
  *ids = e.ids;
  *n = e.n;
  return RB_OK;
}

/* ---- decode and chat ---- */

int rt_tok_decode(const RtTokenizer *t, const int32_t *ids, size_t n, RbBuf *out) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= t->ntok) return RB_EUSER;
  for (size_t i = 0; i < n; i++)
    rb_buf_put(out, t->dec + t->dec_off[ids[i]], t->dec_off[ids[i] + 1] - t->dec_off[ids[i]]);
  return out->oom ? RB_EINTERNAL : RB_OK;
}

/* SmolLM2-Instruct's tokenizer.chat_template puts this system turn first
 * when the conversation has none. */
#define SMOL_SYSTEM "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

int rt_tok_chat_prompt(const RtTokenizer *t, const char *user, RbBuf *out) {
  if (!user || rt_tok_find(t, "<|im_start|>") < 0 || rt_tok_find(t, "<|im_end|>") < 0) return RB_EUSER;
  rb_buf_puts(out, "<|im_start|>system\n" SMOL_SYSTEM "<|im_end|>\n<|im_start|>user\n");
  rb_buf_puts(out, user);
  rb_buf_puts(out, "<|im_end|>\n<|im_start|>assistant\n");
  return out->oom ? RB_EINTERNAL : RB_OK;
}
