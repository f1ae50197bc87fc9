/* report.c: the tuning's final table. One row per unit and batch: the
 * default's and the tuned schedule's time, the speed-up, and how close the
 * tuned kernel comes to the read floor (the bytes a launch must move at the
 * device's bandwidth), so a user sees what tuning bought and what is left. */
#include <math.h>

#include "autotune/autotune.h"

static int timed(double us) { return isfinite(us) && us > 0; }

static void put_us(RbBuf *b, double us) {
  if (timed(us)) rb_buf_printf(b, " %10.2f", us);
  else rb_buf_printf(b, " %10s", "-");
}

void at_tuning_table(const AtTuning *tu, double bytes_per_s, const char *how, RbBuf *out) {
  rb_buf_printf(out, "%-58s %5s %10s %10s %8s %10s %8s  %s\n", "kernel", "batch", "default us", "tuned us", "speed-up",
                "floor us", "of floor", "tuned schedule");
  for (int i = 0; i < tu->n; i++) {
    const AtUnit *u = &tu->u[i];
    const AtUnitResult *r = &tu->r[i];
    RbBuf d = {0};
    cg_kernel_describe(&u->kernel, &d);
    for (int j = 0; j < u->nbatch; j++) {
      double def = r->space.n ? r->us[j] : NAN;
      double tuned = r->choice >= 0 ? r->us[(size_t)r->choice * u->nbatch + j] : NAN;
      double floor_us = bytes_per_s > 0 ? (double)at_unit_floor_bytes(u, u->batch[j]) / bytes_per_s * 1e6 : NAN;
      rb_buf_printf(out, "%-58s %5d", d.data ? d.data : "?", u->batch[j]);
      put_us(out, def);
      put_us(out, tuned);
      if (timed(def) && timed(tuned)) rb_buf_printf(out, " %7.2fx", def / tuned);
      else rb_buf_printf(out, " %8s", "-");
      put_us(out, floor_us);
      if (timed(floor_us) && timed(tuned)) rb_buf_printf(out, " %7.1f%%", 100.0 * floor_us / tuned);
      else rb_buf_printf(out, " %8s", "-");
      rb_buf_printf(out, "  %s%s\n", r->choice < 0 ? "none valid" : r->choice == 0 ? "default" : r->what[r->choice],
                    r->budget_stopped ? " (budget)" : "");
    }
    rb_buf_free(&d);
  }
  if (bytes_per_s > 0)
    rb_buf_printf(out, "floor: the packed weights (bits, g, h) and activations (x, y, res) a launch moves, at %.3f TB/s, "
                       "%s\n", bytes_per_s / 1e12, how && *how ? how : "?");
  rb_buf_puts(out, "times: the graph harness's median per launch; a unit's choice is by its mean over its batches\n");
}
