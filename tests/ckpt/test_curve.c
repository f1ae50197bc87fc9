/* test_curve.c: the loss-curve SVG (trainer/curve.c) is well formed: it
 * opens with <svg and closes with </svg>, holds both polylines, the legend
 * and the axis labels, and no NaN or inf, for a falling curve, one point,
 * a constant loss, a curve with NaN losses and empty series. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/common/check.h"
#include "trainer/trainer.h"

static char path[64];

/* "nan" or "inf" as a word of its own (not inside "dominant"). */
static int has_nonfinite(const char *s) {
  static const char *const bad[] = {"nan", "inf"};
  for (int i = 0; i < 2; i++)
    for (const char *p = strstr(s, bad[i]); p; p = strstr(p + 1, bad[i]))
      if (p == s || !((p[-1] >= 'a' && p[-1] <= 'z') || (p[-1] >= 'A' && p[-1] <= 'Z'))) return 1;
  return 0;
}

/* Tags opened and closed balance, counting self-closed ones. */
static int balanced(const char *s) {
  int depth = 0;
  for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<')) {
    const char *end = strchr(p, '>');
    if (!end) return 0;
    if (p[1] == '/') depth--;
    else if (end[-1] != '/') depth++;
    if (depth < 0) return 0;
  }
  return depth == 0;
}

static void draw(const char *what, const TrCurvePoint *t, int nt, const TrCurvePoint *v, int nv, int want_lines) {
  RbBuf err = {0}, f = {0};
  CHECK(tr_curve_svg(path, t, nt, v, nv, "tiny <RaBiT> & co", "tokens", &err) == RB_OK, "%s: %s", what,
        err.data ? err.data : "");
  CHECK(rb_read_file(path, &f) == 0 && f.len > 0, "%s: no file", what);
  if (f.len) {
    const char *s = f.data;
    CHECK(!strncmp(s, "<svg", 4), "%s: does not open with <svg", what);
    CHECK(f.len >= 7 && !strcmp(s + f.len - 7, "</svg>\n"), "%s: does not end with </svg>", what);
    CHECK(strstr(s, "<polyline class=\"train\"") && strstr(s, "<polyline class=\"val\""), "%s: a polyline is missing", what);
    CHECK(strstr(s, "train loss") && strstr(s, "validation loss") && strstr(s, ">tokens<") &&
              strstr(s, "loss (log scale)"),
          "%s: the legend or a label is missing", what);
    CHECK(strstr(s, "tiny &lt;RaBiT&gt; &amp; co"), "%s: the title is not escaped", what);
    CHECK(!has_nonfinite(s), "%s: a non-finite coordinate", what);
    CHECK(balanced(s), "%s: unbalanced tags", what);
    int yticks = 0;
    for (const char *p = strstr(s, "text-anchor=\"end\""); p; p = strstr(p + 1, "text-anchor=\"end\"")) yticks++;
    CHECK(yticks >= 2, "%s: %d y tick labels", what, yticks);
    /* Points in each polyline: one more than its spaces. */
    const char *tp = strstr(s, "class=\"train\"");
    if (tp && want_lines >= 0) {
      const char *q = strstr(tp, "points=\"") + 8, *e = strchr(q, '"');
      int pts = e > q;
      for (const char *c = q; c < e; c++) pts += *c == ' ';
      CHECK(pts == want_lines, "%s: the train polyline has %d points, want %d", what, pts, want_lines);
    }
  }
  rb_buf_free(&err);
  rb_buf_free(&f);
}

int main(void) {
  snprintf(path, sizeof path, "/tmp/rabit_curve_%d.svg", (int)getpid());
  TrCurvePoint t[200], v[20];
  for (int i = 0; i < 200; i++) t[i] = (TrCurvePoint){i * 4096.0, 10.0 * exp(-i / 40.0) + 2.0};
  for (int i = 0; i < 20; i++) v[i] = (TrCurvePoint){i * 40960.0, 10.0 * exp(-i / 4.0) + 2.3};
  draw("falling", t, 200, v, 20, 200);
  TrCurvePoint one = {100.0, 3.5};
  draw("one point", &one, 1, &one, 1, 1);
  TrCurvePoint flat[5];
  for (int i = 0; i < 5; i++) flat[i] = (TrCurvePoint){(double)i, 4.0};
  draw("constant", flat, 5, flat, 2, 5);
  TrCurvePoint holes[4] = {{0, 5.0}, {1, NAN}, {2, -1.0}, {3, 4.0}};
  draw("nan and negative", holes, 4, v, 0, 2);
  draw("empty", NULL, 0, NULL, 0, 0);
  TrCurvePoint wide[3] = {{0, 1e4}, {1, 1.0}, {2, 1e-3}};
  draw("seven decades", wide, 3, wide, 3, 3);
  RbBuf err = {0};
  CHECK(tr_curve_svg("/nonexistent/dir/c.svg", t, 1, v, 1, NULL, NULL, &err) == RB_EUSER && err.data &&
            strstr(err.data, "/nonexistent/dir/c.svg"),
        "an unwritable path: %s", err.data ? err.data : "");
  rb_buf_free(&err);
  unlink(path);
  return CHECK_SUMMARY();
}
