/* sample.c: the next token from a row of logits: greedy, or temperature with
 * top-k and top-p (nucleus) truncation, from a seeded xorshift generator so
 * that a seed reproduces a run. */
#include <math.h>
#include <stdlib.h>

#include "runtime/text/text.h"

typedef struct {
  float p;
  int id;
} Cand;

struct RtSampler {
  int vocab, top_k;
  float temp, top_p;
  uint64_t state;
  Cand *cand; /* vocab entries of scratch */
};

RtSampler *rt_sampler_new(int vocab, float temp, int top_k, float top_p, uint64_t seed) {
  RtSampler *s = rb_calloc(1, sizeof *s);
  if (!s) return NULL;
  s->cand = rb_malloc((size_t)vocab * sizeof *s->cand);
  if (!s->cand) {
    rb_free(s);
    return NULL;
  }
  s->vocab = vocab;
  s->temp = temp;
  s->top_k = top_k > 0 && top_k < vocab ? top_k : vocab;
  s->top_p = top_p > 0 && top_p < 1 ? top_p : 1;
  s->state = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull; /* never 0 */
  return s;
}

void rt_sampler_free(RtSampler *s) {
  if (!s) return;
  rb_free(s->cand);
  rb_free(s);
}

static double uniform(RtSampler *s) {
  s->state ^= s->state << 13;
  s->state ^= s->state >> 7;
  s->state ^= s->state << 17;
  return (s->state >> 11) * (1.0 / 9007199254740992.0);
}

/* Most likely first; ties by id, so the order (and the sample) is deterministic. */
static int by_prob(const void *a, const void *b) {
  const Cand *x = a, *y = b;
  return x->p < y->p ? 1 : x->p > y->p ? -1 : x->id - y->id;
}

int rt_sample(RtSampler *s, const float *logits) {
  int V = s->vocab, best = 0;
  for (int i = 1; i < V; i++)
    if (logits[i] > logits[best]) best = i;
  if (s->temp <= 0) return best;
  for (int i = 0; i < V; i++) {
    s->cand[i].id = i;
    s->cand[i].p = expf((logits[i] - logits[best]) / s->temp); /* max is 1: no overflow */
  }
  qsort(s->cand, (size_t)V, sizeof *s->cand, by_prob);
  double mass = 0;
  for (int i = 0; i < s->top_k; i++) mass += s->cand[i].p;
  int keep = s->top_k;
  double acc = 0;
  for (int i = 0; i < s->top_k; i++) {
    acc += s->cand[i].p;
    if (acc >= s->top_p * mass) {
      keep = i + 1;
      break;
    }
  }
  double total = 0;
  for (int i = 0; i < keep; i++) total += s->cand[i].p;
  double r = uniform(s) * total;
  for (int i = 0; i < keep; i++)
    if ((r -= s->cand[i].p) <= 0) return s->cand[i].id;
  return s->cand[keep - 1].id;
}
