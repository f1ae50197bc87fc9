/* data.c: token shards, what the trainer reads. One shard per source text:
 * a header (magic, version, split, token count, vocabulary, the SHA-256 of the
 * text, a checksum), then the ids as little-endian int32. The same text and
 * tokenizer give the same bytes; every read checks everything. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "trainer/trainer.h"

static const char shard_magic[8] = {'R', 'B', 'T', 'O', 'K', 'E', 'N', 'S'};

enum { HDR_BYTES = 72, HDR_SUMMED = 64 }; /* the checksum (bytes 64..71) covers bytes 0..63 and the ids */

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

const char *tr_split_name(TrSplit s) { return s == TR_SPLIT_HELDOUT ? "heldout" : "train"; }

static uint64_t shard_sum(const unsigned char *hdr, const unsigned char *ids, size_t bytes) {
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, hdr, HDR_SUMMED);
  XXH3_64bits_update(&st, ids, bytes);
  return XXH3_64bits_digest(&st);
}

int tr_shard_write(const char *path, const TrShard *s, RbBuf *err) {
  size_t bytes = (size_t)s->ntokens * 4;
  unsigned char hdr[HDR_BYTES] = {0}, *ids = rb_malloc(bytes ? bytes : 1);
  if (!ids) return RB_EINTERNAL;
  for (uint64_t i = 0; i < s->ntokens; i++) put_u32(ids + 4 * i, (uint32_t)s->tokens[i]);
  memcpy(hdr, shard_magic, 8);
  put_u32(hdr + 8, TR_SHARD_VERSION);
  put_u32(hdr + 12, (uint32_t)s->split);
  put_u64(hdr + 16, s->ntokens);
  put_u32(hdr + 24, s->vocab);
  memcpy(hdr + 32, s->source_sha256, 32);
  put_u64(hdr + 64, shard_sum(hdr, ids, bytes));
  const void *parts[2] = {hdr, ids};
  size_t lens[2] = {HDR_BYTES, bytes};
  RbBuf why = {0};
  int rc = rb_write_atomic(path, parts, lens, 2, &why);
  if (rc) rb_buf_printf(err, "%s: cannot write the shard: %s", path, why.data ? why.data : "");
  rb_buf_free(&why);
  rb_free(ids);
  return rc;
}

int tr_text_read(const char *path, RbBuf *text, RbBuf *err) {
  if (rb_read_file_max(path, TR_MAX_TEXT_BYTES, text) == 0) return RB_OK;
  char cap[32];
  if (errno == EFBIG)
    rb_buf_printf(err, "cannot read '%s': it is over %s, the cap on a text", path, rb_size_str(TR_MAX_TEXT_BYTES, cap));
  else rb_buf_printf(err, "cannot read '%s': %s", path, strerror(errno));
  return RB_EUSER;
}

int tr_shard_read(const char *path, TrShard *s, RbBuf *err) {
  memset(s, 0, sizeof *s);
  RbBuf f = {0};
  if (rb_read_file_max(path, TR_MAX_SHARD_BYTES, &f) != 0) {
    char cap[32];
    if (errno == EFBIG)
      rb_buf_printf(err, "%s: cannot read the shard: it is over %s, the cap on a shard", path,
                    rb_size_str(TR_MAX_SHARD_BYTES, cap));
    else rb_buf_printf(err, "%s: cannot read the shard: %s", path, strerror(errno));
    rb_buf_free(&f);
    return RB_EUSER;
  }
  const unsigned char *p = (const unsigned char *)f.data;
  int rc = RB_EUSER;
  if (f.len < 8 || memcmp(p, shard_magic, 8) != 0) {
    rb_buf_printf(err, "%s: not a token shard (bad magic)", path);
    goto done;
  }
  if (f.len < HDR_BYTES) {
    rb_buf_printf(err, "%s: the shard is truncated inside its %d-byte header (%zu bytes)", path, HDR_BYTES, f.len);
    goto done;
  }
  uint32_t version = get_u32(p + 8), split = get_u32(p + 12);
  uint64_t n = get_u64(p + 16);
  if (version != TR_SHARD_VERSION) {
    rb_buf_printf(err, "%s: shard version %u is not supported (this build reads %d)", path, version, TR_SHARD_VERSION);
    goto done;
  }
  if (split > TR_SPLIT_HELDOUT) {
    rb_buf_printf(err, "%s: unknown split tag %u", path, split);
    goto done;
  }
  if (n > (f.len - HDR_BYTES) / 4 || f.len - HDR_BYTES != n * 4) {
    rb_buf_printf(err, "%s: the shard is truncated or has trailing bytes: the header says %llu tokens (%llu bytes), "
                       "the file holds %zu bytes after its header", path, (unsigned long long)n,
                  (unsigned long long)n * 4, f.len - HDR_BYTES);
    goto done;
  }
  if (shard_sum(p, p + HDR_BYTES, (size_t)n * 4) != get_u64(p + 64)) {
    rb_buf_printf(err, "%s: checksum mismatch: the shard is corrupted", path);
    goto done;
  }
  s->split = (TrSplit)split;
  s->ntokens = n;
  s->vocab = get_u32(p + 24);
  memcpy(s->source_sha256, p + 32, 32);
  s->tokens = rb_malloc((size_t)n * 4 + 4);
  if (!s->tokens) {
    rc = RB_EINTERNAL;
    goto done;
  }
  for (uint64_t i = 0; i < n; i++) {
    s->tokens[i] = (int32_t)get_u32(p + HDR_BYTES + 4 * i);
    if (s->tokens[i] < 0 || (uint32_t)s->tokens[i] >= s->vocab) {
      rb_buf_printf(err, "%s: token %llu is %d, outside the vocabulary of %u", path, (unsigned long long)i,
                    s->tokens[i], s->vocab);
      tr_shard_free(s);
      goto done;
    }
  }
  rc = RB_OK;
done:
  rb_buf_free(&f);
  return rc;
}

void tr_shard_free(TrShard *s) {
  rb_free(s->tokens);
  memset(s, 0, sizeof *s);
}

int tr_shard_check_trainable(const TrShard *s, const char *path, const unsigned char *eval_sha256, RbBuf *err) {
  if (s->split == TR_SPLIT_HELDOUT) {
    rb_buf_printf(err, "%s: this shard is tagged held-out; it is for evaluation, never for training", path);
    return RB_EUSER;
  }
  if (eval_sha256 && memcmp(s->source_sha256, eval_sha256, 32) == 0) {
    rb_buf_printf(err, "%s: this shard was made from the evaluation text itself; training on it would leak the "
                       "test set", path);
    return RB_EUSER;
  }
  return RB_OK;
}

/* DIR/<base name of text without its extension>.shard */
static int shard_path(char *out, size_t n, const char *dir, const char *text) {
  const char *b = strrchr(text, '/');
  b = b ? b + 1 : text;
  const char *dot = strrchr(b, '.');
  int len = dot && dot != b ? (int)(dot - b) : (int)strlen(b);
  return (size_t)snprintf(out, n, "%s/%.*s.shard", dir, len, b) < n ? 0 : -1;
}

int tr_data_prepare(const TrDataOptions *o, RbBuf *err) {
  if (rb_mkdir_p(o->dir, 0777) != 0) {
    rb_buf_printf(err, "%s: cannot create the directory: %s", o->dir, strerror(errno));
    return RB_EUSER;
  }
  for (int i = 0; i < o->ntexts; i++) {
    char out[4096];
    if (shard_path(out, sizeof out, o->dir, o->texts[i])) {
      rb_buf_printf(err, "%s: the shard's path is too long", o->texts[i]);
      return RB_EUSER;
    }
    RbBuf text = {0};
    if (tr_text_read(o->texts[i], &text, err) != RB_OK) {
      rb_buf_free(&text);
      return RB_EUSER;
    }
    TrShard s = {.split = o->split, .vocab = (uint32_t)rt_tok_vocab(o->tok)};
    rb_sha256(text.data ? text.data : "", text.len, s.source_sha256);
    size_t n = 0;
    int rc = rt_tok_encode(o->tok, text.data ? text.data : "", text.len, &s.tokens, &n);
    s.ntokens = n;
    rb_buf_free(&text);
    if (!rc) rc = tr_shard_write(out, &s, err);
    if (!rc && o->progress) o->progress(o->ctx, o->texts[i], out, &s);
    rb_free(s.tokens);
    if (rc) return rc;
  }
  return RB_OK;
}
