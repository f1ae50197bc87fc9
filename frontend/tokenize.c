/* tokenize.c: source text to tokens. Newlines are not tokens: statements are
 * unambiguous without separators, and each token carries its line and column. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"

typedef struct {
  const char *p;
  int line, col;
  RbArena *arena;
  IrDiag *d;
  FeToken *toks;
  int ntoks, cap;
  int too_many, over_line, over_col; /* FE_MAX_TOKENS reached at over_line:over_col: stop */
} Lexer;

static FeToken *push(Lexer *lx, FeTokKind kind, const char *start, int line, int col) {
  if (lx->ntoks == FE_MAX_TOKENS && kind != FE_T_EOF) {
    lx->too_many = 1;
    lx->over_line = line;
    lx->over_col = col;
    return NULL;
  }
  if (lx->ntoks == lx->cap) {
    int cap = lx->cap ? lx->cap * 2 : 256;
    FeToken *t = rb_arena_alloc(lx->arena, (size_t)cap * sizeof *t);
    if (!t) return NULL;
    if (lx->ntoks) memcpy(t, lx->toks, (size_t)lx->ntoks * sizeof *t);
    lx->toks = t;
    lx->cap = cap;
  }
  FeToken *t = &lx->toks[lx->ntoks++];
  memset(t, 0, sizeof *t);
  t->kind = kind;
  t->loc = start;
  t->len = (int)(lx->p - start);
  t->line = line;
  t->col = col;
  return t;
}

static void advance(Lexer *lx, int n) {
  while (n-- > 0 && *lx->p) {
    if (*lx->p == '\n') {
      lx->line++;
      lx->col = 1;
    } else lx->col++;
    lx->p++;
  }
}

static int is_ident_start(int c) { return isalpha(c) || c == '_'; }
static int is_ident_char(int c) { return isalnum(c) || c == '_'; }

/* number = digits [ "." digits ] [ ("e"|"E") ["+"|"-"] digits ]
 * A "." only belongs to the number when a digit follows, so "0..L" is 0, "..", L. */
static void lex_number(Lexer *lx) {
  const char *s = lx->p;
  int line = lx->line, col = lx->col, is_float = 0;
  const char *q = s;
  while (isdigit((unsigned char)*q)) q++;
  if (q[0] == '.' && isdigit((unsigned char)q[1])) {
    is_float = 1;
    q++;
    while (isdigit((unsigned char)*q)) q++;
  }
  if ((*q == 'e' || *q == 'E') &&
      (isdigit((unsigned char)q[1]) || ((q[1] == '+' || q[1] == '-') && isdigit((unsigned char)q[2])))) {
    is_float = 1;
    q += 2;
    while (isdigit((unsigned char)*q)) q++;
  }
  char buf[64];
  size_t n = (size_t)(q - s);
  advance(lx, (int)n);
  FeToken *t = push(lx, is_float ? FE_T_FLOAT : FE_T_INT, s, line, col);
  if (!t) return;
  if (n >= sizeof buf) {
    ir_diag_error(lx->d, line, col, "number literal is too long");
    return;
  }
  memcpy(buf, s, n);
  buf[n] = 0;
  errno = 0;
  if (is_float) t->fval = strtod(buf, NULL);
  else t->ival = strtoll(buf, NULL, 10);
  if (errno == ERANGE) ir_diag_error(lx->d, line, col, "number literal '%s' is out of range", buf);
  if (is_ident_char((unsigned char)*lx->p)) {
    ir_diag_error(lx->d, lx->line, lx->col, "unexpected '%c' after number '%s'", *lx->p, buf);
    while (is_ident_char((unsigned char)*lx->p)) advance(lx, 1);
  }
}

static void lex_string(Lexer *lx) {
  const char *s = lx->p;
  int line = lx->line, col = lx->col;
  RbBuf b = {0};
  advance(lx, 1);
  for (;;) {
    char c = *lx->p;
    if (c == '"') {
      advance(lx, 1);
      break;
    }
    if (c == 0 || c == '\n') {
      ir_diag_error(lx->d, line, col, "unterminated string literal");
      break;
    }
    if (c == '\\') {
      char e = lx->p[1];
      const char *rep = e == 'n' ? "\n" : e == 't' ? "\t" : e == '"' ? "\"" : e == '\\' ? "\\" : NULL;
      if (!rep) {
        ir_diag_error(lx->d, lx->line, lx->col, "unknown escape sequence '\\%c' in string",
                      isprint((unsigned char)e) ? e : '?');
        advance(lx, e ? 2 : 1);
        continue;
      }
      rb_buf_puts(&b, rep);
      advance(lx, 2);
      continue;
    }
    rb_buf_put(&b, &c, 1);
    advance(lx, 1);
  }
  FeToken *t = push(lx, FE_T_STRING, s, line, col);
  if (t) t->str = rb_arena_strndup(lx->arena, b.data ? b.data : "", b.len);
  rb_buf_free(&b);
}

int fe_tokenize(const char *src, RbArena *a, IrDiag *d, FeToken **toks, int *ntoks) {
  Lexer lx = {src, 1, 1, a, d, NULL, 0, 0, 0, 0, 0};
  int before = d->nerrors;
  while (*lx.p) {
    unsigned char c = (unsigned char)*lx.p;
    if (c == '#') {
      while (*lx.p && *lx.p != '\n') advance(&lx, 1);
    } else if (isspace(c)) {
      advance(&lx, 1);
    } else if (isdigit(c)) {
      lex_number(&lx);
    } else if (is_ident_start(c)) {
      const char *s = lx.p;
      int line = lx.line, col = lx.col;
      while (is_ident_char((unsigned char)*lx.p)) advance(&lx, 1);
      push(&lx, FE_T_IDENT, s, line, col);
    } else if (c == '"') {
      lex_string(&lx);
    } else if ((c == '-' && lx.p[1] == '>') || (c == '.' && lx.p[1] == '.')) {
      const char *s = lx.p;
      int line = lx.line, col = lx.col;
      advance(&lx, 2);
      push(&lx, FE_T_PUNCT, s, line, col);
    } else if (strchr("(){}[],=:@+-*/%", c)) {
      const char *s = lx.p;
      int line = lx.line, col = lx.col;
      advance(&lx, 1);
      push(&lx, FE_T_PUNCT, s, line, col);
    } else {
      if (isprint(c)) ir_diag_error(d, lx.line, lx.col, "unexpected character '%c'", c);
      else ir_diag_error(d, lx.line, lx.col, "unexpected byte 0x%02x", c);
      advance(&lx, 1);
    }
    if (a->oom) return RB_EINTERNAL;
    if (lx.too_many) {
      ir_diag_error(d, lx.over_line, lx.over_col, "the file has more than %d tokens", FE_MAX_TOKENS);
      return RB_EUSER;
    }
  }
  /* End of file is reported where the text ends, not on a blank line after it. */
  int eline = lx.line, ecol = lx.col;
  if (lx.ntoks) {
    const FeToken *last = &lx.toks[lx.ntoks - 1];
    eline = last->line;
    ecol = last->col + last->len;
  }
  push(&lx, FE_T_EOF, lx.p, eline, ecol);
  if (a->oom) return RB_EINTERNAL;
  *toks = lx.toks;
  *ntoks = lx.ntoks;
  return d->nerrors == before ? RB_OK : RB_EUSER;
}
