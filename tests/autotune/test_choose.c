/* test_choose.c: the 3% rule (autotune/choose.c): the visit order, the
 * margin's boundary, an invalid candidate that is fastest and is never
 * chosen (and is logged), untimed candidates, an invalid default, and the
 * check that two tunings agree or flip only within the margin. */
#include <math.h>
#include <string.h>

#include "autotune/autotune.h"
#include "tests/common/check.h"

#define N(a) ((int)(sizeof(a) / sizeof(a)[0]))

static int choose(const AtTiming *t, int n) { return at_choose(t, n, NULL); }

int main(void) {
  /* A candidate 2% faster is noise: the default stays. */
  AtTiming a[] = {{100, 1, 0}, {98, 1, 0}};
  CHECK(choose(a, N(a)) == 0, "2%% faster replaced the incumbent");
  /* At least 3% faster replaces it, the boundary included. */
  AtTiming b[] = {{100, 1, 0}, {97, 1, 0}};
  CHECK(choose(b, N(b)) == 1, "exactly 3%% faster did not replace it");
  AtTiming b2[] = {{100, 1, 0}, {97.01, 1, 0}};
  CHECK(choose(b2, N(b2)) == 0, "2.99%% faster replaced it");
  /* Against the incumbent, not the default: 96 replaces 100, then 94 is
   * only 2.1% faster than 96 and stays out, 90 gets in. */
  AtTiming c[] = {{100, 1, 0}, {96, 1, 0}, {94, 1, 0}, {90, 1, 0}, {88, 1, 0}};
  CHECK(choose(c, N(c)) == 3, "chain: chose %d", choose(c, N(c)));
  /* The order decides among near-equals: the first of them wins, whichever is a hair faster. */
  AtTiming d[] = {{100, 1, 0}, {90, 1, 0}, {89.5, 1, 0}};
  AtTiming d2[] = {{100, 1, 0}, {89.5, 1, 0}, {90, 1, 0}};
  CHECK(choose(d, N(d)) == 1 && choose(d2, N(d2)) == 1, "near-equals: %d, %d", choose(d, N(d)), choose(d2, N(d2)));

  /* The injected broken candidate: by far the fastest, wrong output. */
  AtTiming e[] = {{100, 1, "default"}, {95, 1, "rows 2"}, {10, 0, "broken"}, {96, 1, "rows 4"}};
  RbBuf log = {0};
  int ch = at_choose(e, N(e), &log);
  CHECK(ch == 1, "broken candidate: chose %d", ch);
  CHECK(log.data && !strcmp(log.data, "candidate 2 (broken) failed validation against the reference; never chosen\n"),
        "log: %s", log.data ? log.data : "(none)");
  rb_buf_free(&log);
  /* Invalid everywhere but one. */
  AtTiming f[] = {{1, 0, 0}, {2, 0, 0}, {50, 1, 0}, {3, 0, 0}};
  CHECK(at_choose(f, N(f), &log) == 2, "only valid one not chosen");
  CHECK(log.data && strstr(log.data, "candidate 0 failed") && strstr(log.data, "candidate 1 failed") &&
            strstr(log.data, "candidate 3 failed"),
        "log of three: %s", log.data ? log.data : "");
  rb_buf_free(&log);
  /* An invalid default: the first valid candidate is the incumbent. */
  AtTiming g[] = {{50, 0, 0}, {100, 1, 0}, {98, 1, 0}, {90, 1, 0}};
  CHECK(choose(g, N(g)) == 3, "invalid default: chose %d", choose(g, N(g)));
  /* Untimed candidates (did not build: NaN, 0, negative) are skipped, not logged. */
  AtTiming h[] = {{100, 1, 0}, {NAN, 1, 0}, {0, 1, 0}, {-5, 1, 0}, {INFINITY, 1, 0}};
  CHECK(at_choose(h, N(h), &log) == 0 && log.len == 0, "untimed candidates");
  rb_buf_free(&log);
  AtTiming none[] = {{NAN, 1, 0}, {10, 0, 0}};
  CHECK(choose(none, N(none)) == -1 && choose(none, 0) == -1, "nothing valid and timed");

  /* The choice is within the margin of the fastest valid candidate. */
  AtTiming r[64];
  unsigned s = 12345;
  for (int trial = 0; trial < 200; trial++) {
    int n = 1 + trial % 60;
    double best = INFINITY;
    for (int i = 0; i < n; i++) {
      s = s * 1103515245u + 12345u;
      r[i].us = 50 + (s >> 16) % 1000 / 10.0;
      r[i].valid = (s >> 8) % 7 != 0;
      r[i].what = NULL;
      if (r[i].valid && r[i].us < best) best = r[i].us;
    }
    int k = choose(r, n);
    if (isinf(best)) CHECK(k == -1, "trial %d: chose %d with none valid", trial, k);
    else CHECK(k >= 0 && r[k].valid && r[k].us * (1 - AT_MARGIN) < best + 1e-9, "trial %d: %g against best %g", trial,
               k >= 0 ? r[k].us : -1, best);
  }

  /* Two tunings: the same choices agree; a flip within 3% is allowed; more is not. */
  AtPick x[] = {{0, 100}, {3, 50}, {5, 20}, {2, 10}};
  AtPick y[] = {{0, 101}, {4, 49}, {5, 25}, {7, 8}};
  RbBuf why = {0};
  int bad = at_picks_disagree(x, y, N(x), &why);
  CHECK(bad == 1, "disagreements: %d\n%s", bad, why.data ? why.data : "");
  CHECK(why.data && strstr(why.data, "kernel 3: candidate 2 (10.000 us) against candidate 7 (8.000 us), 20.0% apart\n"),
        "why: %s", why.data ? why.data : "");
  rb_buf_free(&why);
  CHECK(at_picks_disagree(x, x, N(x), NULL) == 0, "a tuning disagrees with itself");
  AtPick p[] = {{1, 100}}, q[] = {{2, 97}}, q2[] = {{2, 97.5}}, u[] = {{2, NAN}};
  CHECK(at_picks_disagree(p, q, 1, NULL) == 1, "a 3%% flip was allowed");
  CHECK(at_picks_disagree(p, q2, 1, NULL) == 0, "a 2.5%% flip was refused");
  CHECK(at_picks_disagree(p, u, 1, NULL) == 1 && at_picks_disagree(u, p, 1, NULL) == 1, "an untimed flip was allowed");
  return CHECK_SUMMARY();
}
