/* test_shards.c: token shards. SHA-256 against the FIPS 180-4 test vectors;
 * a shard's ids equal the tokenizer's encoding of the text; the same texts give
 * the same bytes; a flipped byte, a truncated file, a wrong version, an id
 * outside the vocabulary are refused, naming the file; a held-out shard, or
 * one made from the evaluation text, may not train.
 * usage: test_shards VOCAB (tests/tokenizer/data/vocab.txt) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/common/check.h"
#include "trainer/trainer.h"

static void hex(const unsigned char *d, char out[65]) {
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_sha256(void) {
  static const struct { const char *in, *want; } v[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    unsigned char d[32];
    char h[65];
    rb_sha256(v[i].in, strlen(v[i].in), d);
    hex(d, h);
    CHECK(!strcmp(h, v[i].want), "sha256('%s') = %s, want %s", v[i].in, h, v[i].want);
  }
  /* A million 'a': many blocks, and the padding in a block of its own. */
  char *m = malloc(1000000);
  memset(m, 'a', 1000000);
  unsigned char d[32];
  char h[65];
  rb_sha256(m, 1000000, d);
  hex(d, h);
  CHECK(!strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "sha256(1e6 x 'a') = %s", h);
  free(m);
}

static char *slurp(const char *path, size_t *n) {
  RbBuf b = {0};
  if (rb_read_file(path, &b)) return NULL;
  *n = b.len;
  return b.data;
}

static void spit(const char *path, const void *d, size_t n) {
  FILE *f = fopen(path, "wb");
  fwrite(d, 1, n, f);
  fclose(f);
}

static void expect_bad(const char *path, const char *want, const char *what) {
  TrShard s;
  RbBuf err = {0};
  int rc = tr_shard_read(path, &s, &err);
  CHECK(rc == RB_EUSER, "%s: a damaged shard was read", what);
  CHECK(err.data && strstr(err.data, path) && strstr(err.data, want), "%s: expected '%s' in '%s'", what, want,
        err.data ? err.data : "");
  printf("%s: %s\n", what, err.data ? err.data : "");
  if (rc == RB_OK) tr_shard_free(&s);
  rb_buf_free(&err);
}

int main(int argc, char **argv) {
  test_sha256();
  RtTokenizer *tok = NULL;
  RbBuf err = {0};
  if (argc < 2 || rt_tok_load_vocab(argv[1], &tok, &err)) {
    printf("cannot load the vocabulary: %s\n", err.data ? err.data : "usage: test_shards VOCAB");
    return 1;
  }
  char dir[64], a[96], b[96];
  snprintf(dir, sizeof dir, "/tmp/rabit_shards_%d", (int)getpid());
  snprintf(a, sizeof a, "%s/kjv.txt", dir);
  snprintf(b, sizeof b, "%s/emma.txt", dir);
  rb_mkdir_p(dir, 0700);
  /* Fresh text each run: random words, so no count below is remembered. */
  srand((unsigned)getpid());
  RbBuf t1 = {0}, t2 = {0};
  static const char *const words[] = {"the", "LORD", "said", "unto", "Emma", "Woodhouse", ",", "handsome", "\n", "é"};
  for (int i = 0; i < 2000; i++) rb_buf_printf(i % 2 ? &t1 : &t2, "%s ", words[rand() % 10]);
  spit(a, t1.data, t1.len);
  spit(b, t2.data, t2.len);
  char out1[96], out2[96];
  snprintf(out1, sizeof out1, "%s/one", dir);
  snprintf(out2, sizeof out2, "%s/two", dir);
  const char *texts[] = {a, b};
  TrDataOptions o = {tok, texts, 2, TR_SPLIT_TRAIN, out1, NULL, NULL};
  CHECK(tr_data_prepare(&o, &err) == RB_OK, "prepare: %s", err.data);
  o.dir = out2;
  CHECK(tr_data_prepare(&o, &err) == RB_OK, "prepare again: %s", err.data);

  char s1[128], s2[128];
  snprintf(s1, sizeof s1, "%s/kjv.shard", out1);
  snprintf(s2, sizeof s2, "%s/kjv.shard", out2);
  size_t n1 = 0, n2 = 0;
  char *d1 = slurp(s1, &n1), *d2 = slurp(s2, &n2);
  CHECK(d1 && d2 && n1 == n2 && !memcmp(d1, d2, n1), "the same text gave different shard bytes");

  /* The ids are the tokenizer's, and the header names the text. */
  TrShard s;
  CHECK(tr_shard_read(s1, &s, &err) == RB_OK, "read: %s", err.data);
  int32_t *ids = NULL;
  size_t nid = 0;
  rt_tok_encode(tok, t1.data, t1.len, &ids, &nid);
  CHECK(s.ntokens == nid && nid > 1000 && !memcmp(s.tokens, ids, nid * 4), "shard ids differ from the encoding");
  CHECK(n1 == 72 + 4 * nid, "shard is %zu bytes, want 72 + 4 x %zu", n1, nid);
  unsigned char sha[32];
  rb_sha256(t1.data, t1.len, sha);
  CHECK(!memcmp(s.source_sha256, sha, 32) && s.split == TR_SPLIT_TRAIN && s.vocab == (uint32_t)rt_tok_vocab(tok),
        "header fields wrong");
  /* May train, unless it is the evaluation text. */
  CHECK(tr_shard_check_trainable(&s, s1, NULL, &err) == RB_OK, "a train shard refused");
  RbBuf why = {0};
  CHECK(tr_shard_check_trainable(&s, s1, sha, &why) == RB_EUSER && strstr(why.data, "evaluation text"),
        "a shard of the evaluation text was allowed to train");
  rb_buf_free(&why);
  tr_shard_free(&s);

  /* Held out. */
  o.split = TR_SPLIT_HELDOUT;
  o.dir = dir;
  CHECK(tr_data_prepare(&o, &err) == RB_OK, "prepare heldout: %s", err.data);
  char h[128];
  snprintf(h, sizeof h, "%s/emma.shard", dir);
  CHECK(tr_shard_read(h, &s, &err) == RB_OK && s.split == TR_SPLIT_HELDOUT, "heldout read: %s", err.data);
  CHECK(tr_shard_check_trainable(&s, h, NULL, &why) == RB_EUSER && strstr(why.data, "held-out") && strstr(why.data, h),
        "a held-out shard was allowed to train");
  rb_buf_free(&why);
  tr_shard_free(&s);

  /* Damage: every kind is refused, naming the file. */
  char bad[128];
  snprintf(bad, sizeof bad, "%s/bad.shard", dir);
  size_t at = 72 + (size_t)rand() % (n1 - 72);
  d1[at] ^= 0x10;
  spit(bad, d1, n1);
  expect_bad(bad, "checksum mismatch", "flipped id byte");
  d1[at] ^= 0x10;
  d1[40] ^= 1; /* the source hash is summed too */
  spit(bad, d1, n1);
  expect_bad(bad, "checksum mismatch", "flipped header byte");
  d1[40] ^= 1;
  spit(bad, d1, n1 - 6);
  expect_bad(bad, "truncated", "truncated");
  spit(bad, d1, 40);
  expect_bad(bad, "truncated inside its 72-byte header", "cut inside the header");
  d1[8] = 9;
  spit(bad, d1, n1);
  expect_bad(bad, "shard version 9 is not supported", "version");
  d1[8] = 1;
  memcpy(d1, "RBTOKEMS", 8);
  spit(bad, d1, n1);
  expect_bad(bad, "bad magic", "magic");
  snprintf(bad, sizeof bad, "%s/none.shard", dir);
  expect_bad(bad, "cannot read the shard", "missing");

  free(d1), free(d2), rb_free(ids);
  rb_buf_free(&t1), rb_buf_free(&t2), rb_buf_free(&err);
  rt_tok_free(tok);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) printf("could not remove %s\n", dir);
  return CHECK_SUMMARY();
}
