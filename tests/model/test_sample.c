/* test_sample: the sampler against the distributions it promises: greedy is
 * the argmax; temperature draws follow softmax(logits / temp); top-k and
 * top-p keep exactly the tokens they should; a seed reproduces a run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/text/text.h"
#include "tests/common/check.h"

enum { DRAWS = 200000 };

/* Frequencies of DRAWS samples over V tokens. */
static void histogram(RtSampler *s, const float *logits, int V, double *freq) {
  for (int i = 0; i < V; i++) freq[i] = 0;
  for (int i = 0; i < DRAWS; i++) freq[rt_sample(s, logits)] += 1.0 / DRAWS;
}

/* Every frequency within tol of the wanted probability. */
static double max_gap(const double *freq, const double *want, int V) {
  double gap = 0;
  for (int i = 0; i < V; i++) gap = fmax(gap, fabs(freq[i] - want[i]));
  return gap;
}

static void softmax(const float *logits, int V, double temp, double *p) {
  double sum = 0;
  for (int i = 0; i < V; i++) sum += p[i] = exp(logits[i] / temp);
  for (int i = 0; i < V; i++) p[i] /= sum;
}

int main(void) {
  srand(12345);
  /* Greedy, and top-k = 1 at any temperature: the argmax. */
  for (int trial = 0; trial < 50; trial++) {
    float l[1000];
    int best = 0;
    for (int i = 0; i < 1000; i++) {
      l[i] = (float)rand() / RAND_MAX * 20 - 10;
      if (l[i] > l[best]) best = i;
    }
    RtSampler *g = rt_sampler_new(1000, 0, 0, 1, trial), *k1 = rt_sampler_new(1000, 1.5f, 1, 1, trial);
    CHECK(rt_sample(g, l) == best, "greedy picked a token that is not the argmax");
    CHECK(rt_sample(k1, l) == best, "top-k 1 picked a token that is not the argmax");
    rt_sampler_free(g);
    rt_sampler_free(k1);
  }
  /* Temperature 1 and 0.5 follow the softmax. */
  const float logits[5] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f};
  double freq[5], want[5];
  for (int t = 0; t < 2; t++) {
    float temp = t ? 0.5f : 1.0f;
    RtSampler *s = rt_sampler_new(5, temp, 0, 1, 7);
    histogram(s, logits, 5, freq);
    softmax(logits, 5, temp, want);
    double gap = max_gap(freq, want, 5);
    CHECK(gap < 0.006, "temperature %.1f: frequencies off the softmax by %.4f", temp, gap);
    rt_sampler_free(s);
  }
  /* Top-k 2 keeps tokens 4 and 0 in the ratio of their probabilities. */
  RtSampler *k2 = rt_sampler_new(5, 1, 2, 1, 9);
  histogram(k2, logits, 5, freq);
  softmax(logits, 5, 1, want);
  double z = want[4] + want[0];
  double kwant[5] = {want[0] / z, 0, 0, 0, want[4] / z};
  CHECK(max_gap(freq, kwant, 5) < 0.006, "top-k 2: frequencies off by %.4f", max_gap(freq, kwant, 5));
  rt_sampler_free(k2);
  /* Top-p over probabilities 0.4, 0.3, 0.2, 0.1: p = 0.5 keeps the first two
   * (0.4 < 0.5 <= 0.7), p = 0.4 keeps the first alone. */
  const float pl[4] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f)};
  RtSampler *p5 = rt_sampler_new(4, 1, 0, 0.5f, 3), *p4 = rt_sampler_new(4, 1, 0, 0.4f, 3);
  double f4[4];
  histogram(p5, pl, 4, f4);
  double pwant[4] = {0.4 / 0.7, 0.3 / 0.7, 0, 0};
  CHECK(max_gap(f4, pwant, 4) < 0.006, "top-p 0.5: frequencies off by %.4f", max_gap(f4, pwant, 4));
  histogram(p4, pl, 4, f4);
  CHECK(f4[1] == 0 && f4[2] == 0 && f4[3] == 0, "top-p 0.4 must keep only the most likely token (got %.4f)", f4[0]);
  rt_sampler_free(p5);
  rt_sampler_free(p4);
  /* A seed reproduces a run; another seed gives another. */
  RtSampler *a = rt_sampler_new(5, 1, 0, 1, 42), *b = rt_sampler_new(5, 1, 0, 1, 42), *c = rt_sampler_new(5, 1, 0, 1, 43);
  int same_ab = 1, same_ac = 1;
  for (int i = 0; i < 200; i++) {
    int x = rt_sample(a, logits), y = rt_sample(b, logits), w = rt_sample(c, logits);
    same_ab &= x == y;
    same_ac &= x == w;
  }
  CHECK(same_ab, "the same seed gave different draws");
  CHECK(!same_ac, "different seeds gave the same 200 draws");
  rt_sampler_free(a);
  rt_sampler_free(b);
  rt_sampler_free(c);
  return CHECK_SUMMARY();
}
