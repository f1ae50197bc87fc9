/* train.c: the training loop of `rabit train`: token shards in, batches of
 * random windows, the compiled step (qat.c) under warm-up and cosine decay,
 * validation, atomic checkpoints and resume, the NaN stop, the loss curve,
 * and the export to the packed format at the end. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/trainer.h"

/* ==== data ==== */

/* splitmix64: the batch sampler's generator; its one word of state is the
 * data position a checkpoint saves. */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The *.shard files of dir, sorted (so the stream does not depend on readdir's order). */
static int list_shards(const char *dir, char ***out, int *n, RbBuf *err) {
  DIR *d = opendir(dir);
  *out = NULL, *n = 0;
  if (!d) {
    rb_buf_printf(err, "%s: cannot open the shard directory", dir);
    return RB_EUSER;
  }
  int cap = 0, rc = RB_OK;
  struct dirent *e;
  while ((e = readdir(d)) && !rc) {
    size_t len = strlen(e->d_name);
    if (len < 7 || strcmp(e->d_name + len - 6, ".shard")) continue;
    if (*n == cap) {
      cap = cap ? 2 * cap : 16;
      char **nv = rb_realloc(*out, (size_t)cap * sizeof *nv);
      if (!nv) {
        rc = RB_EINTERNAL;
        break;
      }
      *out = nv;
    }
    size_t pl = strlen(dir) + len + 2;
    char *p = rb_malloc(pl);
    if (!p) {
      rc = RB_EINTERNAL;
      break;
    }
    snprintf(p, pl, "%s/%s", dir, e->d_name);
    (*out)[(*n)++] = p;
  }
  closedir(d);
  if (!rc && !*n) {
    rb_buf_printf(err, "%s: no .shard files (make them with rabit data prepare)", dir);
    rc = RB_EUSER;
  }
  if (!rc) qsort(*out, (size_t)*n, sizeof **out, by_name);
  return rc;
}

static void free_list(char **v, int n) {
  for (int i = 0; i < n; i++) rb_free(v[i]);
  rb_free(v);
}

/* The held-out texts' hashes: a training shard made from one of them is refused. */
static int eval_hashes(const char *dir, unsigned char (**out)[32], int *n, RbBuf *err) {
  *out = NULL, *n = 0;
  if (!dir) return RB_OK;
  char **paths;
  int np, rc = list_shards(dir, &paths, &np, err);
  if (rc) return rc;
  *out = rb_calloc((size_t)np, sizeof **out);
  if (!*out) rc = RB_EINTERNAL;
  for (int i = 0; i < np && !rc; i++) {
    TrShard s;
    if ((rc = tr_shard_read(paths[i], &s, err))) break;
    memcpy((*out)[(*n)++], s.source_sha256, 32);
    tr_shard_free(&s);
  }
  free_list(paths, np);
  return rc;
}

int tr_train_data_load(const char *dir, const char *eval_dir, TrTrainData *d, RbBuf *err) {
  memset(d, 0, sizeof *d);
  char **paths = NULL;
  int np = 0, nh = 0;
  unsigned char(*held)[32] = NULL;
  int rc = eval_hashes(eval_dir, &held, &nh, err);
  if (!rc) rc = list_shards(dir, &paths, &np, err);
  for (int i = 0; i < np && !rc; i++) {
    TrShard s;
    if ((rc = tr_shard_read(paths[i], &s, err))) break;
    rc = tr_shard_check_trainable(&s, paths[i], NULL, err);
    for (int h = 0; h < nh && !rc; h++) rc = tr_shard_check_trainable(&s, paths[i], held[h], err);
    if (!rc && d->vocab && s.vocab != d->vocab) {
      rb_buf_printf(err, "%s: made with a vocabulary of %u ids, the other shards with %u", paths[i], s.vocab, d->vocab);
      rc = RB_EUSER;
    }
    if (!rc) {
      int32_t *nt = rb_realloc(d->tokens, (size_t)(d->ntokens + s.ntokens) * sizeof *nt);
      if (!nt) rc = RB_EINTERNAL;
      else {
        memcpy(nt + d->ntokens, s.tokens, (size_t)s.ntokens * sizeof *nt);
        d->tokens = nt, d->ntokens += s.ntokens, d->vocab = s.vocab, d->nshards++;
      }
    }
    tr_shard_free(&s);
  }
  free_list(paths, np);
  rb_free(held);
  if (rc) tr_train_data_free(d);
  return rc;
}

void tr_train_data_free(TrTrainData *d) {
  rb_free(d->tokens);
  memset(d, 0, sizeof *d);
}

void tr_train_batch(const TrTrainData *d, int batch, int seq, uint64_t *rng, int32_t *out) {
  uint64_t span = d->ntokens - (uint64_t)seq + 1; /* window starts; the caller checks ntokens >= seq */
  for (int b = 0; b < batch; b++) {
    uint64_t start = rng_next(rng) % span;
    memcpy(out + (size_t)b * seq, d->tokens + start, (size_t)seq * sizeof *out);
  }
}

double tr_lr_scale(int step, int steps, int warmup) {
  double warm = warmup > 0 ? (step + 1.0) / warmup : 1.0;
  if (warm > 1.0) warm = 1.0;
  double frac = steps > 0 ? (double)step / steps : 1.0;
  if (frac > 1.0) frac = 1.0;
  double s = warm * 0.5 * (1.0 + cos(M_PI * frac));
  return s < 0.02 ? 0.02 : s;
}
