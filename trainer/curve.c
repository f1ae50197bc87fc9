/* curve.c: the loss curve as a self-contained SVG (no dependency, no
 * script): train and validation loss against step or tokens, log-scale y,
 * ticked and labelled axes, a legend. Written atomically beside the checkpoint. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "trainer/trainer.h"

/* The canvas and the plot area inside it, in SVG user units. */
enum { WIDTH = 800, HEIGHT = 500, LEFT = 80, RIGHT = 30, TOP = 50, BOTTOM = 60 };

typedef struct {
  double x0, x1, ly0, ly1; /* x range; log10 of the y range */
} Frame;

static int usable(const TrCurvePoint *p) { return isfinite(p->x) && isfinite(p->loss) && p->loss > 0.0; }

static double px(const Frame *f, double x) { return LEFT + (x - f->x0) / (f->x1 - f->x0) * (WIDTH - LEFT - RIGHT); }
static double py(const Frame *f, double y) {
  return HEIGHT - BOTTOM - (log10(y) - f->ly0) / (f->ly1 - f->ly0) * (HEIGHT - TOP - BOTTOM);
}

/* A "nice" step (1, 2 or 5 times a power of ten) giving about n ticks over span. */
static double nice_step(double span, int n) {
  double raw = span / n, p = pow(10.0, floor(log10(raw))), m = raw / p;
  return (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0) * p;
}

/* Numbers on the axes: short, and the same value always spelled the same. */
static void put_num(RbBuf *b, double v) {
  double a = fabs(v);
  if (v == 0.0) rb_buf_puts(b, "0");
  else if (a >= 1e6 || a < 1e-3) rb_buf_printf(b, "%.3g", v);
  else rb_buf_printf(b, "%.6g", v);
}

/* The range of both series; a single value is widened so the axes never divide by zero. */
static Frame frame_of(const TrCurvePoint *a, int na, const TrCurvePoint *b, int nb) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (int s = 0; s < 2; s++) {
    const TrCurvePoint *p = s ? b : a;
    for (int i = 0, n = s ? nb : na; i < n; i++) {
      if (!usable(&p[i])) continue;
      x0 = fmin(x0, p[i].x), x1 = fmax(x1, p[i].x);
      y0 = fmin(y0, p[i].loss), y1 = fmax(y1, p[i].loss);
    }
  }
  if (!(x0 <= x1)) x0 = 0.0, x1 = 1.0;           /* no points */
  if (!(y0 <= y1)) y0 = 1.0, y1 = 10.0;
  if (x1 - x0 <= fabs(x0) * 1e-12) x0 -= fmax(1.0, fabs(x0) * 0.05), x1 += fmax(1.0, fabs(x1) * 0.05);
  Frame f = {x0, x1, log10(y0), log10(y1)};
  /* At least a fifth of a decade, centred, so a flat loss sits mid-plot. */
  if (f.ly1 - f.ly0 < 0.2) {
    double mid = 0.5 * (f.ly0 + f.ly1);
    f.ly0 = mid - 0.1, f.ly1 = mid + 0.1;
  }
  /* A little margin so the curve does not run along the frame. */
  double pad = 0.03 * (f.ly1 - f.ly0);
  f.ly0 -= pad, f.ly1 += pad;
  return f;
}

static void axes(RbBuf *b, const Frame *f, const char *xlabel) {
  int x_left = LEFT, x_right = WIDTH - RIGHT, y_top = TOP, y_bottom = HEIGHT - BOTTOM;
  rb_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", x_left,
                y_top, x_right - x_left, y_bottom - y_top);
  /* x ticks: nice linear steps. */
  double step = nice_step(f->x1 - f->x0, 8);
  for (double v = ceil(f->x0 / step) * step; v <= f->x1 + step * 1e-9; v += step) {
    double x = px(f, v);
    rb_buf_printf(b, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#444\"/>\n", x, y_bottom, x,
                  y_bottom + 5);
    rb_buf_printf(b, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">", x, y_bottom + 20);
    put_num(b, fabs(v) < step * 1e-9 ? 0.0 : v);
    rb_buf_puts(b, "</text>\n");
  }
  /* y ticks: under a decade, nice linear steps of the value (a log axis
   * would show none); else 1, 2, 5 times each power of ten under three
   * decades, powers of ten alone beyond. Gridlines at each. */
  double yv0 = pow(10.0, f->ly0), yv1 = pow(10.0, f->ly1);
  double ys = f->ly1 - f->ly0 < 1.0 ? nice_step(yv1 - yv0, 5) : 0.0;
  int dense = f->ly1 - f->ly0 < 3.0;
  double v = ys ? ceil(yv0 / ys) * ys : 0.0;
  for (int e = (int)floor(f->ly0), m = 1; ys ? v <= yv1 : e <= (int)ceil(f->ly1);) {
    double tv = ys ? v : m * pow(10.0, e);
    if (ys) v += ys;
    else if (dense && m < 5) m += m == 1 ? 1 : 3;
    else m = 1, e++;
    if (!(tv > 0.0) || log10(tv) < f->ly0 || log10(tv) > f->ly1) continue;
    double y = py(f, tv);
    rb_buf_printf(b, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#ddd\"/>\n", x_left, y, x_right, y);
    rb_buf_printf(b, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#444\"/>\n", x_left - 5, y, x_left, y);
    rb_buf_printf(b, "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\" dominant-baseline=\"middle\">", x_left - 8, y);
    put_num(b, tv);
    rb_buf_puts(b, "</text>\n");
  }
  rb_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (x_left + x_right) / 2, HEIGHT - 15);
  rb_buf_xml_text(b, xlabel && *xlabel ? xlabel : "step");
  rb_buf_puts(b, "</text>\n");
  rb_buf_printf(b, "<text x=\"20\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 20 %d)\">loss (log scale)</text>\n",
                (y_top + y_bottom) / 2, (y_top + y_bottom) / 2);
}

/* One series: a polyline, and a dot per point so that a single point shows. */
static void series(RbBuf *b, const Frame *f, const TrCurvePoint *p, int n, const char *cls, const char *color) {
  rb_buf_printf(b, "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", cls, color);
  int first = 1;
  for (int i = 0; i < n; i++)
    if (usable(&p[i])) {
      rb_buf_printf(b, "%s%.2f,%.2f", first ? "" : " ", px(f, p[i].x), py(f, p[i].loss));
      first = 0;
    }
  rb_buf_puts(b, "\"/>\n");
  int shown = 0;
  for (int i = 0; i < n; i++) shown += usable(&p[i]);
  if (shown > 50) return; /* dots only where they stay readable */
  for (int i = 0; i < n; i++)
    if (usable(&p[i]))
      rb_buf_printf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>\n", px(f, p[i].x), py(f, p[i].loss), color);
}

int tr_curve_svg(const char *path, const TrCurvePoint *train, int ntrain, const TrCurvePoint *val, int nval,
                 const char *title, const char *xlabel, RbBuf *err) {
  if (ntrain < 0 || nval < 0 || (ntrain && !train) || (nval && !val)) {
    rb_buf_printf(err, "%s: bad loss-curve arguments", path);
    return RB_EUSER;
  }
  Frame f = frame_of(train, ntrain, val, nval);
  RbBuf b = {0};
  rb_buf_printf(&b,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                "font-family=\"sans-serif\" font-size=\"12\">\n",
                WIDTH, HEIGHT, WIDTH, HEIGHT);
  rb_buf_printf(&b, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", WIDTH, HEIGHT);
  if (title && *title) {
    rb_buf_printf(&b, "<text x=\"%d\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">", WIDTH / 2);
    rb_buf_xml_text(&b, title);
    rb_buf_puts(&b, "</text>\n");
  }
  axes(&b, &f, xlabel);
  series(&b, &f, train, ntrain, "train", "#1f77b4");
  series(&b, &f, val, nval, "val", "#d62728");
  /* The legend, top right inside the plot. */
  int lx = WIDTH - RIGHT - 150, ly = TOP + 12;
  rb_buf_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"140\" height=\"44\" fill=\"white\" stroke=\"#999\"/>\n", lx,
                ly - 6);
  rb_buf_printf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
                    "<text x=\"%d\" y=\"%d\" dominant-baseline=\"middle\">train loss</text>\n",
                lx + 8, ly + 6, lx + 32, ly + 6, lx + 40, ly + 6);
  rb_buf_printf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#d62728\" stroke-width=\"2\"/>"
                    "<text x=\"%d\" y=\"%d\" dominant-baseline=\"middle\">validation loss</text>\n",
                lx + 8, ly + 26, lx + 32, ly + 26, lx + 40, ly + 26);
  rb_buf_puts(&b, "</svg>\n");
  if (b.oom) {
    rb_buf_free(&b);
    rb_buf_printf(err, "%s: out of memory drawing the loss curve", path);
    return RB_EINTERNAL;
  }
  const void *parts[1] = {b.data};
  size_t lens[1] = {b.len};
  RbBuf why = {0};
  int rc = rb_write_atomic(path, parts, lens, 1, &why);
  if (rc) rb_buf_printf(err, "%s: cannot write the loss curve: %s", path, why.data ? why.data : "");
  rb_buf_free(&why);
  rb_buf_free(&b);
  return rc;
}
