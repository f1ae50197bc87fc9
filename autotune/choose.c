/* choose.c: the 3% rule. Candidates are visited in the space's fixed order
 * and one replaces the incumbent only when it is at least AT_MARGIN faster,
 * so measurement noise below the margin never changes a choice; a candidate
 * whose output was wrong is never chosen, however fast. */
#include <math.h>

#include "autotune/autotune.h"

static int timed(const AtTiming *t) { return isfinite(t->us) && t->us > 0; }

static void name(RbBuf *b, const AtTiming *t, int i) {
  if (t->what) rb_buf_printf(b, "candidate %d (%s)", i, t->what);
  else rb_buf_printf(b, "candidate %d", i);
}

int at_choose(const AtTiming *t, int n, RbBuf *log) {
  int best = -1;
  for (int i = 0; i < n; i++) {
    if (!t[i].valid) {
      if (log) {
        name(log, &t[i], i);
        rb_buf_puts(log, " failed validation against the reference; never chosen\n");
      }
      continue;
    }
    if (!timed(&t[i])) continue;
    if (best < 0 || t[i].us <= (1.0 - AT_MARGIN) * t[best].us) best = i;
  }
  return best;
}

int at_picks_disagree(const AtPick *a, const AtPick *b, int n, RbBuf *why) {
  int bad = 0;
  for (int i = 0; i < n; i++) {
    if (a[i].choice == b[i].choice) continue;
    /* Within the margin: the faster is not AT_MARGIN faster than the slower.
     * An untimed pick (NaN, <= 0) is never within it. */
    int both = isfinite(a[i].us) && a[i].us > 0 && isfinite(b[i].us) && b[i].us > 0;
    double fast = fmin(a[i].us, b[i].us), slow = fmax(a[i].us, b[i].us);
    if (both && fast > (1.0 - AT_MARGIN) * slow) continue;
    bad++;
    if (why)
      rb_buf_printf(why, "kernel %d: candidate %d (%.3f us) against candidate %d (%.3f us), %.1f%% apart\n", i,
                    a[i].choice, a[i].us, b[i].choice, b[i].us, slow > 0 ? 100.0 * (slow - fast) / slow : 0.0);
  }
  return bad;
}
