/* eval.c: DESIGN.md's held-out split and its evaluation. The held-out text
 * (KJV part, then Austen part) tokenized whole is one stream cut into windows;
 * even windows choose (validation), odd windows report (test), and each window
 * is labelled by the part it lies in. The model scores windows on the GPU. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "trainer/trainer.h"

const char *tr_eval_set_name(TrEvalSet s) { return s == TR_EVAL_TEST ? "test" : "validation"; }

const char *tr_eval_source_name(TrEvalSource s) {
  static const char *const names[TR_EVAL_NSOURCE] = {"kjv", "austen", "mixed"};
  return s >= 0 && s < TR_EVAL_NSOURCE ? names[s] : "?";
}

int tr_eval_split(uint64_t ntokens, uint64_t boundary, int window, int max_windows, TrEvalWindow **out, int *n,
                  RbBuf *err) {
  *out = NULL;
  *n = 0;
  uint64_t total = ntokens, count = window > 0 ? total / (uint64_t)window : 0;
  if (window < 2 || !count) {
    rb_buf_printf(err, "the held-out stream has %llu tokens, fewer than one window of %d",
                  (unsigned long long)total, window);
    return RB_EUSER;
  }
  if (count > (1u << 30)) count = 1u << 30;
  if (max_windows > 0 && (uint64_t)max_windows < count) count = (uint64_t)max_windows;
  TrEvalWindow *w = rb_calloc(count, sizeof *w);
  if (!w) return RB_EINTERNAL;
  for (uint64_t i = 0; i < count; i++) {
    uint64_t a = i * (uint64_t)window, b = a + (uint64_t)window;
    w[i].index = (int)i;
    w[i].start = a;
    w[i].set = i % 2 ? TR_EVAL_TEST : TR_EVAL_VALID;
    w[i].source = b <= boundary ? TR_EVAL_KJV : a >= boundary ? TR_EVAL_AUSTEN : TR_EVAL_MIXED;
  }
  *out = w;
  *n = (int)count;
  return RB_OK;
}

/* Read one shard of DIR: it must exist, be whole and be tagged held-out. */
static int read_part(const char *dir, const char *name, TrShard *s, RbBuf *err) {
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
    rb_buf_printf(err, "%s: the path is too long", dir);
    return RB_EUSER;
  }
  int rc = tr_shard_read(path, s, err);
  if (rc) return rc;
  if (s->split != TR_SPLIT_HELDOUT) {
    rb_buf_printf(err, "%s: this shard is tagged %s; evaluation reads held-out shards only (rabit data prepare "
                       "--split heldout)", path, tr_split_name(s->split));
    return RB_EUSER;
  }
  return RB_OK;
}

/* The stream is heldout.txt tokenized whole, as DESIGN.md says and as every
 * earlier number used it; tokenizing its two parts apart would differ where a
 * pre-token spans the seam (KJV's last newline and Austen's first blank
 * lines). So the KJV part's own shard only says where the KJV part ends: the
 * first token where it and the stream disagree. */
int tr_eval_open(const char *dir, int window, int max_windows, TrEvalData *d, RbBuf *err) {
  memset(d, 0, sizeof *d);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    rb_buf_printf(err, "%s: %s (the held-out shards' directory: rabit data prepare --split heldout -o DIR)", dir,
                  stat(dir, &st) != 0 ? strerror(errno) : "not a directory");
    return RB_EUSER;
  }
  TrShard h = {0}, k = {0};
  int rc = read_part(dir, TR_EVAL_SHARD, &h, err);
  if (!rc) rc = read_part(dir, TR_EVAL_KJV_SHARD, &k, err);
  if (!rc && k.vocab != h.vocab) {
    rb_buf_printf(err, "%s: the shards disagree on the vocabulary (%s %u, %s %u): made with two tokenizers", dir,
                  TR_EVAL_SHARD, h.vocab, TR_EVAL_KJV_SHARD, k.vocab);
    rc = RB_EUSER;
  }
  uint64_t b = 0;
  while (!rc && b < k.ntokens && b < h.ntokens && k.tokens[b] == h.tokens[b]) b++;
  if (!rc && (k.ntokens >= h.ntokens || b + TR_EVAL_SEAM_SLACK < k.ntokens)) {
    rb_buf_printf(err, "%s/%s is not the KJV part of %s/%s: %s", dir, TR_EVAL_KJV_SHARD, dir, TR_EVAL_SHARD,
                  k.ntokens >= h.ntokens ? "it is not shorter than the whole" : "they differ early");
    if (k.ntokens < h.ntokens)
      rb_buf_printf(err, " (at token %llu of its %llu)", (unsigned long long)b, (unsigned long long)k.ntokens);
    rc = RB_EUSER;
  }
  if (!rc) rc = tr_eval_split(h.ntokens, b, window, max_windows, &d->w, &d->nwindows, err);
  if (!rc) {
    d->tokens = h.tokens, h.tokens = NULL;
    d->ntokens = h.ntokens;
    d->boundary = b;
    d->kjv_tokens = k.ntokens;
    d->vocab = h.vocab;
    d->window = window;
  }
  tr_shard_free(&h);
  tr_shard_free(&k);
  return rc;
}

void tr_eval_free(TrEvalData *d) {
  rb_free(d->tokens);
  rb_free(d->w);
  memset(d, 0, sizeof *d);
}

int64_t tr_eval_compare(const TrEvalData *d, const int32_t *ids, size_t n) {
  uint64_t used = (uint64_t)d->nwindows * (uint64_t)d->window;
  for (uint64_t i = 0; i < used; i++)
    if (i >= n || ids[i] != d->tokens[i]) return (int64_t)i;
  return -1;
}

void tr_eval_add(TrEvalResult *r, const TrEvalWindow *w, double nll_sum, uint64_t predicted) {
  TrEvalSum *s = &r->by[w->set][w->source];
  s->nll += nll_sum;
  s->tokens += predicted;
  s->windows++;
}

TrEvalSum tr_eval_sum(const TrEvalResult *r, TrEvalSet set, int source) {
  TrEvalSum t = {0, 0, 0};
  for (int i = 0; i < TR_EVAL_NSOURCE; i++)
    if (source < 0 || source == i) {
      t.nll += r->by[set][i].nll;
      t.tokens += r->by[set][i].tokens;
      t.windows += r->by[set][i].windows;
    }
  return t;
}

double tr_eval_ppl(TrEvalSum s) { return s.tokens ? exp(s.nll / (double)s.tokens) : NAN; }

int tr_eval_run(RtModel *m, const TrEvalData *d, const TrEvalRunOptions *o, TrEvalResult *r, RbBuf *err) {
  memset(r, 0, sizeof *r);
  unsigned sets = o && o->sets ? o->sets : (1u << TR_EVAL_VALID) | (1u << TR_EVAL_TEST);
  if (d->window > rt_model_max_ctx(m)) {
    rb_buf_printf(err, "windows of %d tokens exceed the model's context of %d", d->window, rt_model_max_ctx(m));
    return RB_EUSER;
  }
  if (d->vocab > (uint32_t)rt_model_vocab(m)) {
    rb_buf_printf(err, "the shards' vocabulary (%u) is larger than the model's (%d): another tokenizer", d->vocab,
                  rt_model_vocab(m));
    return RB_EUSER;
  }
  if (!(r->window_nll = rb_malloc((size_t)d->nwindows * sizeof *r->window_nll + 8))) return RB_EINTERNAL;
  r->nwindows = d->nwindows;
  int total = 0, done = 0;
  for (int i = 0; i < d->nwindows; i++) {
    r->window_nll[i] = NAN;
    total += !!(sets & (1u << d->w[i].set));
  }
  double t0 = rb_now_ms();
  for (int i = 0; i < d->nwindows; i++) {
    const TrEvalWindow *w = &d->w[i];
    if (!(sets & (1u << w->set))) continue;
    double sum = 0;
    int rc = rt_model_nll(m, d->tokens + w->start, d->window, &sum, NULL);
    if (rc) {
      rb_buf_printf(err, "window %d (tokens %llu..%llu): %s", w->index, (unsigned long long)w->start,
                    (unsigned long long)(w->start + (uint64_t)d->window - 1), rt_model_error(m));
      return rc;
    }
    tr_eval_add(r, w, sum, (uint64_t)d->window - 1);
    r->window_nll[i] = sum / (d->window - 1);
    r->forwarded += (uint64_t)d->window;
    r->seconds = (rb_now_ms() - t0) / 1e3;
    if (o && o->progress) o->progress(o->ctx, ++done, total, r);
  }
  return RB_OK;
}

void tr_eval_result_free(TrEvalResult *r) {
  rb_free(r->window_nll);
  memset(r, 0, sizeof *r);
}
