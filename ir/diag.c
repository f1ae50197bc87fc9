/* diag.c: renders user errors as path:line:col, the source line and a caret. */
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"

#define DIAG_LINE_MAX 160 /* bytes of a source line shown with an error */

void ir_diag_init(IrDiag *d, const char *path, const char *source) {
  memset(d, 0, sizeof *d);
  d->path = path;
  d->source = source;
}

/* Find line `line` (1-based) of the source; returns its start and length. */
static const char *source_line(const char *src, int line, int *len) {
  const char *p = src;
  for (int l = 1; l < line && *p; p++)
    if (*p == '\n') l++;
  const char *e = p;
  while (*e && *e != '\n') e++;
  *len = (int)(e - p);
  return p;
}

void ir_diag_error(IrDiag *d, int line, int col, const char *fmt, ...) {
  int max = d->max_errors ? d->max_errors : 20;
  d->nerrors++;
  if (d->nerrors > max) {
    if (d->nerrors == max + 1) rb_buf_printf(&d->out, "%s: too many errors, stopping\n", d->path);
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  if (line > 0) rb_buf_printf(&d->out, "%s:%d:%d: error: ", d->path, line, col);
  else rb_buf_printf(&d->out, "%s: error: ", d->path);
  rb_buf_vprintf(&d->out, fmt, ap);
  va_end(ap);
  rb_buf_puts(&d->out, "\n");
  if (!d->source || line <= 0) return;
  int len;
  const char *p = source_line(d->source, line, &len);
  /* A long line is shown as a window around the column, so a 10 MB line
   * costs a few hundred bytes per error, not megabytes of spaces. */
  int from = 0, to = len, at = col - 1 < len ? col - 1 : len;
  if (len > DIAG_LINE_MAX) {
    from = at > DIAG_LINE_MAX / 2 ? at - DIAG_LINE_MAX / 2 : 0;
    to = from + DIAG_LINE_MAX < len ? from + DIAG_LINE_MAX : len;
  }
  if (from > 0) rb_buf_puts(&d->out, "...");
  rb_buf_put(&d->out, p + from, (size_t)(to - from));
  rb_buf_puts(&d->out, to < len ? "...\n" : "\n");
  if (from > 0) rb_buf_puts(&d->out, "   ");
  /* Keep tabs as tabs so the caret lines up however the terminal renders them. */
  for (int i = from; i < at; i++) rb_buf_put(&d->out, p[i] == '\t' ? "\t" : " ", 1);
  rb_buf_puts(&d->out, "^\n");
}

void ir_diag_free(IrDiag *d) { rb_buf_free(&d->out); }
