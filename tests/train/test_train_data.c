/* test_train_data.c: the training loop's CPU parts: the learning-rate schedule
 * against the reference's transcription of TRAINING.md, and the batch sampler
 * (windows inside the stream, the same seed the same batches, another seed
 * others, every start reachable). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/check.h"
#include "tests/ref/ref_train.h"
#include "trainer/trainer.h"

int main(void) {
  /* the schedule: warm-up, cosine, the 0.02 floor */
  double worst = 0;
  int steps[] = {1, 7, 100, 610}, warm[] = {0, 1, 20, 50};
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 4; b++)
      for (int s = 0; s <= steps[a] + 2; s++) {
        /* no warm-up is the schedule of a one-step warm-up */
        double want = ref_train_lr_scale(s, steps[a], warm[b] ? warm[b] : 1);
        worst = fmax(worst, fabs(tr_lr_scale(s, steps[a], warm[b]) - want));
      }
  CHECK(worst < 1e-12, "the schedule differs from the reference by %g", worst);
  CHECK(fabs(tr_lr_scale(0, 610, 20) - 0.05) < 1e-12, "step 0 of a 20-step warm-up: %g", tr_lr_scale(0, 610, 20));
  CHECK(tr_lr_scale(609, 610, 20) == 0.02, "the floor at the end: %g", tr_lr_scale(609, 610, 20));

  /* the sampler: windows of seq consecutive tokens of the stream, inside it */
  TrTrainData d = {.ntokens = 1000, .vocab = 1000, .nshards = 1};
  d.tokens = malloc(d.ntokens * sizeof *d.tokens);
  for (uint64_t i = 0; i < d.ntokens; i++) d.tokens[i] = (int32_t)i; /* each token names its position */
  enum { B = 8, S = 64 };
  int32_t a[B * S], b[B * S], c[B * S];
  uint64_t r1 = 42, r2 = 42, r3 = 43;
  int bad = 0, seen_last = 0, seen_first = 0;
  for (int it = 0; it < 2000; it++) {
    tr_train_batch(&d, B, S, &r1, a);
    tr_train_batch(&d, B, S, &r2, b);
    tr_train_batch(&d, B, S, &r3, c);
    bad += memcmp(a, b, sizeof a) != 0;
    for (int w = 0; w < B; w++) {
      const int32_t *x = a + w * S;
      for (int t = 1; t < S; t++) bad += x[t] != x[0] + t;
      bad += x[0] < 0 || x[S - 1] >= (int32_t)d.ntokens;
      seen_first |= x[0] == 0, seen_last |= x[S - 1] == (int32_t)d.ntokens - 1;
    }
  }
  CHECK(bad == 0, "%d batches are not windows of the stream or differ for one seed", bad);
  CHECK(memcmp(a, c, sizeof a) != 0, "another seed gives the same batch");
  CHECK(seen_first && seen_last, "the first or the last window is never drawn");
  free(d.tokens);
  return CHECK_SUMMARY();
}
