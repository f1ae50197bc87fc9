/* plot.c: the tuning as a self-contained SVG (no library, no script), drawn
 * the way trainer/curve.c and tests/bench/loss_plot.py draw theirs: per shape
 * and batch, the default's time, the tuned time and the read floor, on a
 * log scale of microseconds, so the distance left to the floor shows. */
#include <math.h>
#include <stdio.h>

#include "autotune/autotune.h"

enum { LEFT = 80, RIGHT = 30, TOP = 60, BOTTOM = 170, HEIGHT = 560, SLOT = 46 };

static int timed(double us) { return isfinite(us) && us > 0; }

typedef struct {
  double ly0, ly1; /* log10 of the y range */
  int width;
} Frame;

static double py(const Frame *f, double us) {
  return HEIGHT - BOTTOM - (log10(us) - f->ly0) / (f->ly1 - f->ly0) * (HEIGHT - TOP - BOTTOM);
}

/* The three times of unit i at its batch j. */
static void times(const AtTuning *tu, int i, int j, double bytes_per_s, double v[3]) {
  const AtUnit *u = &tu->u[i];
  const AtUnitResult *r = &tu->r[i];
  v[0] = r->space.n ? r->us[j] : NAN;
  v[1] = r->choice >= 0 ? r->us[(size_t)r->choice * u->nbatch + j] : NAN;
  v[2] = bytes_per_s > 0 ? (double)at_unit_floor_bytes(u, u->batch[j]) / bytes_per_s * 1e6 : NAN;
}

/* A shape's label: "4096x4096 k=2 +add b=16". */
static void label(const AtUnit *u, int batch, char *out, size_t n) {
  const CgOp *op = &u->kernel.op;
  int len = 0;
  for (int s = 0; s < op->nseg; s++) len += snprintf(out + len, n - (size_t)len, "%s%d", s ? "+" : "", op->N[s]);
  snprintf(out + len, n - (size_t)len, "x%d k=%d%s b=%d", op->K, op->paths,
           op->epilogue == CG_EPI_ADD ? " +add" : op->epilogue == CG_EPI_SWIGLU ? " swiglu" : "", batch);
}

void at_tuning_svg(const AtTuning *tu, double bytes_per_s, const char *how, RbBuf *out) {
  static const char *const name[3] = {"default", "tuned", "read floor"};
  static const char *const colour[3] = {"#d62728", "#1f77b4", "#7f7f7f"};
  int slots = 0;
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < tu->n; i++)
    for (int j = 0; j < tu->u[i].nbatch; j++, slots++) {
      double v[3];
      times(tu, i, j, bytes_per_s, v);
      for (int k = 0; k < 3; k++)
        if (timed(v[k])) lo = fmin(lo, v[k]), hi = fmax(hi, v[k]);
    }
  if (!(lo <= hi)) lo = 1, hi = 10;
  Frame f = {floor(log10(lo) * 4) / 4, ceil(log10(hi) * 4) / 4, LEFT + RIGHT + SLOT * (slots ? slots : 1)};
  if (f.ly1 - f.ly0 < 0.5) f.ly1 = f.ly0 + 0.5;
  if (f.width < 720) f.width = 720; /* room for the legend and the floor's line */
  int x_right = f.width - RIGHT, y_bottom = HEIGHT - BOTTOM;
  rb_buf_printf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                     "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                f.width, HEIGHT, f.width, HEIGHT);
  rb_buf_printf(out, "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">rabitc tune: time per launch "
                     "against the read floor</text>\n", f.width / 2);
  rb_buf_printf(out, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", LEFT, TOP,
                x_right - LEFT, y_bottom - TOP);
  /* y: 1, 2, 5 times each power of ten inside the range, with gridlines. */
  for (int e = (int)floor(f.ly0); e <= (int)ceil(f.ly1); e++)
    for (int m = 1; m <= 5; m += m == 1 ? 1 : 3) {
      double v = m * pow(10.0, e);
      if (log10(v) < f.ly0 - 1e-9 || log10(v) > f.ly1 + 1e-9) continue;
      double y = py(&f, v);
      rb_buf_printf(out, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#ddd\"/>\n", LEFT, y, x_right, y);
      rb_buf_printf(out, "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\" dominant-baseline=\"middle\">%g</text>\n",
                    LEFT - 6, y, v);
    }
  rb_buf_printf(out, "<text x=\"20\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 20 %d)\">us per launch "
                     "(log scale)</text>\n", (TOP + y_bottom) / 2, (TOP + y_bottom) / 2);
  int slot = 0;
  for (int i = 0; i < tu->n; i++)
    for (int j = 0; j < tu->u[i].nbatch; j++, slot++) {
      double v[3], x = LEFT + SLOT * (slot + 0.5);
      char lab[96];
      times(tu, i, j, bytes_per_s, v);
      label(&tu->u[i], tu->u[i].batch[j], lab, sizeof lab);
      if (timed(v[2])) /* the floor: a bar from the axis, what no schedule can beat */
        rb_buf_printf(out, "<rect class=\"floor\" x=\"%.2f\" y=\"%.2f\" width=\"%d\" height=\"%.2f\" fill=\"#e5e5e5\" "
                           "stroke=\"%s\"/>\n", x - SLOT * 0.3, py(&f, v[2]), (int)(SLOT * 0.6),
                      y_bottom - py(&f, v[2]), colour[2]);
      if (timed(v[0]) && timed(v[1]))
        rb_buf_printf(out, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#999\"/>\n", x, py(&f, v[0]),
                      x, py(&f, v[1]));
      for (int k = 0; k < 2; k++)
        if (timed(v[k]))
          rb_buf_printf(out, "<circle class=\"%s\" cx=\"%.2f\" cy=\"%.2f\" r=\"4.5\" fill=\"%s\"><title>%s %.2f us</title>"
                             "</circle>\n", name[k], x, py(&f, v[k]), colour[k], name[k], v[k]);
      rb_buf_printf(out, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"end\" transform=\"rotate(-60 %.2f %d)\">", x,
                    y_bottom + 12, x, y_bottom + 12);
      rb_buf_xml_text(out, lab);
      rb_buf_puts(out, "</text>\n");
    }
  for (int k = 0; k < 3; k++) {
    int lx = LEFT + 10 + 120 * k;
    rb_buf_printf(out, "<rect x=\"%d\" y=\"38\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"47\">%s</text>\n",
                  lx, k == 2 ? "#e5e5e5" : colour[k], lx + 14, name[k]);
  }
  rb_buf_printf(out, "<text x=\"%d\" y=\"%d\" font-size=\"11\">floor: weights and activations at ", LEFT, HEIGHT - 10);
  if (bytes_per_s > 0) {
    rb_buf_printf(out, "%.3f TB/s, ", bytes_per_s / 1e12);
    rb_buf_xml_text(out, how && *how ? how : "?");
  } else {
    rb_buf_puts(out, "an unknown bandwidth");
  }
  rb_buf_puts(out, "</text>\n</svg>\n");
}
