/* test_eval_split.c: the held-out split of trainer/eval.c, on the CPU. The
 * window count (tail dropped), even windows validation and odd ones test,
 * KJV/Austen/mixed labels around the boundary (inside a window and exactly on
 * one), --windows; synthetic shards: the stream and the KJV part's shard,
 * the boundary where they first differ (a seam pre-token), and a train shard,
 * a missing directory or shard, a KJV shard that is not the stream's start, a
 * corrupted shard and two vocabularies refused by name; the sums and
 * perplexities; the stream compared with a tokenization. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/common/check.h"
#include "trainer/trainer.h"

static void test_split(void) {
  TrEvalWindow *w = NULL;
  int n = 0;
  RbBuf err = {0};
  /* 3000 KJV + 2500 Austen = 5500 tokens: 5 windows of 1024, 380 dropped. */
  CHECK(tr_eval_split(5500, 3000, 1024, 0, &w, &n, &err) == RB_OK && n == 5, "5 windows, got %d", n);
  static const TrEvalSet set[5] = {TR_EVAL_VALID, TR_EVAL_TEST, TR_EVAL_VALID, TR_EVAL_TEST, TR_EVAL_VALID};
  static const TrEvalSource src[5] = {TR_EVAL_KJV, TR_EVAL_KJV, TR_EVAL_MIXED, TR_EVAL_AUSTEN, TR_EVAL_AUSTEN};
  for (int i = 0; i < n && i < 5; i++) {
    CHECK(w[i].index == i && w[i].start == (uint64_t)i * 1024, "window %d starts at %llu", i,
          (unsigned long long)w[i].start);
    CHECK(w[i].set == set[i], "window %d is %s", i, tr_eval_set_name(w[i].set));
    CHECK(w[i].source == src[i], "window %d is %s, want %s", i, tr_eval_source_name(w[i].source),
          tr_eval_source_name(src[i]));
  }
  rb_free(w);
  /* The boundary on a window edge: no mixed window. */
  CHECK(tr_eval_split(4096, 2048, 1024, 0, &w, &n, &err) == RB_OK && n == 4, "4 windows, got %d", n);
  for (int i = 0; i < n; i++)
    CHECK(w[i].source == (i < 2 ? TR_EVAL_KJV : TR_EVAL_AUSTEN), "edge: window %d is %s", i,
          tr_eval_source_name(w[i].source));
  rb_free(w);
  /* One token past the edge: the window holding it is mixed. */
  CHECK(tr_eval_split(4096, 2049, 1024, 0, &w, &n, &err) == RB_OK && n == 4 && w[2].source == TR_EVAL_MIXED &&
            w[1].source == TR_EVAL_KJV && w[3].source == TR_EVAL_AUSTEN,
        "edge + 1");
  rb_free(w);
  /* --windows: the first N. */
  CHECK(tr_eval_split(5500, 3000, 1024, 2, &w, &n, &err) == RB_OK && n == 2 && w[1].set == TR_EVAL_TEST,
        "max 2 windows, got %d", n);
  rb_free(w);
  CHECK(tr_eval_split(5500, 3000, 1024, 100, &w, &n, &err) == RB_OK && n == 5, "max above the count, got %d", n);
  rb_free(w);
  /* Not one window. */
  CHECK(tr_eval_split(1000, 500, 1024, 0, &w, &n, &err) == RB_EUSER && !w && n == 0 && err.data &&
            strstr(err.data, "1000 tokens, fewer than one window of 1024"),
        "too short: %s", err.data ? err.data : "");
  rb_buf_free(&err);
}

/* A shard of n ids, the first `common` of them those of the stream (id i: (i * 7 + 1) % vocab). */
static void make_shard(const char *dir, const char *name, TrSplit split, uint32_t vocab, int n, int common) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  TrShard s = {.split = split, .ntokens = (uint64_t)n, .vocab = vocab};
  s.tokens = malloc((size_t)n * 4 + 4);
  for (int i = 0; i < n; i++) s.tokens[i] = i < common ? (i * 7 + 1) % (int)vocab : (i * 7 + 2) % (int)vocab;
  RbBuf err = {0};
  if (tr_shard_write(path, &s, &err)) printf("cannot write %s: %s\n", path, err.data ? err.data : "");
  free(s.tokens);
  rb_buf_free(&err);
}

/* tr_eval_open's error on dir, which must contain want. */
static void expect_open_error(const char *dir, const char *want, const char *what) {
  TrEvalData d;
  RbBuf err = {0};
  int rc = tr_eval_open(dir, 1024, 0, &d, &err);
  CHECK(rc == RB_EUSER && err.data && strstr(err.data, want), "%s: rc %d, '%s', want '%s'", what, rc,
        err.data ? err.data : "", want);
  tr_eval_free(&d);
  rb_buf_free(&err);
}

static void test_shards(void) {
  char dir[] = "/tmp/rabit_eval_XXXXXX";
  if (!mkdtemp(dir)) {
    CHECK(0, "mkdtemp");
    return;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/none", dir);
  expect_open_error(path, "none: No such file or directory (the held-out shards' directory", "missing dir");
  expect_open_error(dir, "heldout.shard: cannot read the shard", "missing shard");

  /* The stream of 5500; the KJV part alone is 3002 tokens whose last two differ (a seam pre-token). */
  make_shard(dir, TR_EVAL_SHARD, TR_SPLIT_HELDOUT, 300, 5500, 5500);
  expect_open_error(dir, "heldout-kjv.shard: cannot read the shard", "missing KJV shard");
  make_shard(dir, TR_EVAL_KJV_SHARD, TR_SPLIT_HELDOUT, 300, 3002, 3000);
  TrEvalData d;
  RbBuf err = {0};
  int rc = tr_eval_open(dir, 1024, 0, &d, &err);
  CHECK(rc == RB_OK, "open: %s", err.data ? err.data : "");
  if (!rc) {
    CHECK(d.ntokens == 5500 && d.boundary == 3000 && d.kjv_tokens == 3002 && d.vocab == 300 && d.nwindows == 5 &&
              d.window == 1024,
          "stream %llu tokens, boundary %llu, %d windows", (unsigned long long)d.ntokens,
          (unsigned long long)d.boundary, d.nwindows);
    CHECK(d.tokens[0] == 1 && d.tokens[5499] == (5499 * 7 + 1) % 300, "the stream is heldout.shard's");
    CHECK(d.w[1].source == TR_EVAL_KJV && d.w[2].source == TR_EVAL_MIXED && d.w[3].source == TR_EVAL_AUSTEN,
          "labels from the boundary");
    /* The stream against a tokenization now: equal, then one id changed. */
    int32_t *ids = malloc((size_t)d.ntokens * 4);
    memcpy(ids, d.tokens, (size_t)d.ntokens * 4);
    CHECK(tr_eval_compare(&d, ids, d.ntokens) == -1, "compare: equal");
    ids[3001] ^= 1;
    CHECK(tr_eval_compare(&d, ids, d.ntokens) == 3001, "compare: differs at 3001");
    CHECK(tr_eval_compare(&d, ids, 2000) == 2000, "compare: shorter");
    free(ids);
  }
  tr_eval_free(&d);
  rb_buf_free(&err);
  /* --windows 1: one window, still the whole stream read. */
  rc = tr_eval_open(dir, 1024, 1, &d, &err);
  CHECK(rc == RB_OK && d.nwindows == 1 && d.w[0].set == TR_EVAL_VALID, "--windows 1");
  tr_eval_free(&d);

  /* A KJV shard that is not the stream's beginning, or not shorter than it. */
  make_shard(dir, TR_EVAL_KJV_SHARD, TR_SPLIT_HELDOUT, 300, 3000, 2000);
  expect_open_error(dir, "heldout-kjv.shard is not the KJV part of", "KJV shard differs early");
  expect_open_error(dir, "they differ early (at token 2000 of its 3000)", "where it differs");
  make_shard(dir, TR_EVAL_KJV_SHARD, TR_SPLIT_HELDOUT, 300, 5500, 5500);
  expect_open_error(dir, "it is not shorter than the whole", "KJV shard as long as the stream");
  /* A train shard in either slot. */
  make_shard(dir, TR_EVAL_KJV_SHARD, TR_SPLIT_TRAIN, 300, 3000, 3000);
  expect_open_error(dir, "heldout-kjv.shard: this shard is tagged train; evaluation reads held-out shards only",
                    "train KJV shard");
  make_shard(dir, TR_EVAL_SHARD, TR_SPLIT_TRAIN, 300, 5500, 5500);
  expect_open_error(dir, "heldout.shard: this shard is tagged train", "train stream shard");
  /* Another tokenizer's vocabulary. */
  make_shard(dir, TR_EVAL_SHARD, TR_SPLIT_HELDOUT, 300, 5500, 5500);
  make_shard(dir, TR_EVAL_KJV_SHARD, TR_SPLIT_HELDOUT, 400, 3000, 3000);
  expect_open_error(dir, "the shards disagree on the vocabulary (heldout.shard 300, heldout-kjv.shard 400)",
                    "two vocabularies");
  /* A flipped byte in the stream's ids. */
  snprintf(path, sizeof path, "%s/%s", dir, TR_EVAL_SHARD);
  FILE *f = fopen(path, "r+b");
  if (f) {
    fseek(f, 100, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 100, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
  }
  expect_open_error(dir, "heldout.shard: checksum mismatch: the shard is corrupted", "corrupted shard");
  unlink(path);
  snprintf(path, sizeof path, "%s/%s", dir, TR_EVAL_KJV_SHARD);
  unlink(path);
  rmdir(dir);
  rb_buf_free(&err);
}

static void test_sums(void) {
  TrEvalWindow *w = NULL;
  int n = 0;
  RbBuf err = {0};
  tr_eval_split(5500, 3000, 1024, 0, &w, &n, &err);
  TrEvalResult r;
  memset(&r, 0, sizeof r);
  for (int i = 0; i < n; i++) tr_eval_add(&r, &w[i], 1023.0 * (i + 1), 1023); /* mean NLL of window i: i + 1 */
  TrEvalSum v = tr_eval_sum(&r, TR_EVAL_VALID, -1), t = tr_eval_sum(&r, TR_EVAL_TEST, -1);
  CHECK(v.windows == 3 && v.tokens == 3 * 1023 && fabs(tr_eval_ppl(v) - exp((1 + 3 + 5) / 3.0)) < 1e-9,
        "validation: windows 0, 2, 4");
  CHECK(t.windows == 2 && fabs(tr_eval_ppl(t) - exp(3.0)) < 1e-9, "test: windows 1, 3");
  CHECK(fabs(tr_eval_ppl(tr_eval_sum(&r, TR_EVAL_TEST, TR_EVAL_KJV)) - exp(2.0)) < 1e-9, "test KJV: window 1");
  CHECK(fabs(tr_eval_ppl(tr_eval_sum(&r, TR_EVAL_TEST, TR_EVAL_AUSTEN)) - exp(4.0)) < 1e-9, "test Austen: window 3");
  CHECK(isnan(tr_eval_ppl(tr_eval_sum(&r, TR_EVAL_TEST, TR_EVAL_MIXED))), "no mixed test window: NAN");
  CHECK(tr_eval_sum(&r, TR_EVAL_VALID, TR_EVAL_MIXED).windows == 1, "the mixed window validates");
  rb_free(w);
  rb_buf_free(&err);
}

int main(void) {
  test_split();
  test_shards();
  test_sums();
  return CHECK_SUMMARY();
}
