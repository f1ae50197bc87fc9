/* parse.c: recursive descent from tokens to the AST. Each function parses the
 * grammar rule in the comment above it (the full grammar is in GRAMMAR.md).
 * A syntax error is reported once per statement; the parser then skips to the
 * next line and goes on, so one run reports several errors. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "frontend/frontend.h"

typedef struct {
  const FeToken *tok;
  int ntoks, pos;
  RbArena *a;
  IrDiag *d;
  int failed; /* an error in the current statement: stay quiet until recovery */
  int nerr;
  int eof_reported; /* one "found end of file" is enough: the outer blocks echo it */
  int depth;  /* expression levels being parsed (the descent's recursion) */
  int blocks; /* 'repeat' bodies being parsed */
} Parser;

static const FeToken *peek(Parser *P) { return &P->tok[P->pos]; }
static const FeToken *peek2(Parser *P) {
  return &P->tok[P->pos + 1 < P->ntoks ? P->pos + 1 : P->ntoks - 1];
}
static const FeToken *next(Parser *P) {
  const FeToken *t = &P->tok[P->pos];
  if (t->kind != FE_T_EOF) P->pos++;
  return t;
}

static int is_punct(const FeToken *t, const char *s) {
  return t->kind == FE_T_PUNCT && t->len == (int)strlen(s) && memcmp(t->loc, s, (size_t)t->len) == 0;
}
static int is_word(const FeToken *t, const char *s) {
  return t->kind == FE_T_IDENT && t->len == (int)strlen(s) && memcmp(t->loc, s, (size_t)t->len) == 0;
}

/* Words that start a top-level item or a statement; never an expression. */
static int is_keyword(const FeToken *t) {
  static const char *const kw[] = {"model", "let", "quant", "graph", "repeat", "in", "return"};
  for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
    if (is_word(t, kw[i])) return 1;
  return 0;
}

static int is_toplevel(const FeToken *t) {
  return is_word(t, "model") || is_word(t, "let") || is_word(t, "quant") || is_word(t, "graph");
}

/* How a token reads in a message: 'x', or "end of file". */
static const char *describe(Parser *P, const FeToken *t) {
  if (t->kind == FE_T_EOF) return "end of file";
  int n = t->len > 24 ? 24 : t->len;
  return rb_arena_printf(P->a, "'%.*s%s'", n, t->loc, t->len > 24 ? "..." : "");
}

static void error_at(Parser *P, const FeToken *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Report a syntax error at t, once per statement. */
static void error_at(Parser *P, const FeToken *t, const char *fmt, ...) {
  if (P->failed) return;
  P->failed = 1;
  P->nerr++;
  if (t->kind == FE_T_EOF && P->eof_reported++) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ir_diag_error(P->d, t->line, t->col, "%s", msg);
}

/* Expect punctuation s; `ctx` explains what it closes, e.g. " (to close 'repeat' at line 3)". */
static int expect(Parser *P, const char *s, const char *ctx) {
  if (P->failed) return 0;
  if (is_punct(peek(P), s)) {
    next(P);
    return 1;
  }
  const char *what = rb_arena_printf(P->a, "'%s'%s", s, ctx ? ctx : "");
  error_at(P, peek(P), "expected %s, found %s", what, describe(P, peek(P)));
  return 0;
}

static const char *expect_ident(Parser *P, const char *what) {
  if (P->failed) return NULL;
  const FeToken *t = peek(P);
  if (t->kind != FE_T_IDENT) {
    error_at(P, t, "expected %s, found %s", what, describe(P, t));
    return NULL;
  }
  next(P);
  return rb_arena_strndup(P->a, t->loc, (size_t)t->len);
}

/* Append one element to an arena array, doubling its capacity when full. */
static void *push_elem(Parser *P, void **arr, int *n, int *cap, size_t size) {
  if (*n == *cap) {
    int ncap = *cap ? *cap * 2 : 4;
    void *p = rb_arena_alloc(P->a, (size_t)ncap * size);
    if (!p) return NULL;
    if (*n) memcpy(p, *arr, (size_t)*n * size);
    *arr = p;
    *cap = ncap;
  }
  return (char *)*arr + (size_t)(*n)++ * size;
}

/* Skip to the first token on a later line than the failed one, then resume. */
static void recover(Parser *P, int line) {
  while (peek(P)->kind != FE_T_EOF && peek(P)->line <= line && !is_punct(peek(P), "}")) next(P);
  P->failed = 0;
}

static FeExpr *new_expr(Parser *P, FeExprKind kind, const FeToken *t) {
  FeExpr *e = rb_arena_alloc(P->a, sizeof *e);
  if (!e) return NULL;
  e->kind = kind;
  e->line = t->line;
  e->col = t->col;
  e->depth = 1;
  return e;
}

static void too_deep(Parser *P, const FeToken *t) {
  error_at(P, t, "expression is deeper than %d levels (each operator, '(' and call counts one)",
           FE_MAX_DEPTH);
}

/* Give e the depth of its deepest child plus one; NULL (after an error at t)
 * when that is over FE_MAX_DEPTH, so every later walk of the tree is bounded. */
static FeExpr *deepen(Parser *P, FeExpr *e, const FeExpr *child, const FeToken *t) {
  if (!e || !child || child->depth < e->depth) return e;
  if (child->depth >= FE_MAX_DEPTH) {
    too_deep(P, t);
    return NULL;
  }
  e->depth = child->depth + 1;
  return e;
}

static FeExpr *expr(Parser *P);

/* arglist = "(" [ arg { "," arg } ] ")"
 * arg     = IDENT "=" expr | expr */
static void arglist(Parser *P, FeArg **args, int *nargs, const FeToken *open_for) {
  int cap = 0;
  const FeToken *open = peek(P);
  if (!expect(P, "(", NULL)) return;
  if (is_punct(peek(P), ")")) {
    next(P);
    return;
  }
  for (;;) {
    FeArg *arg = push_elem(P, (void **)args, nargs, &cap, sizeof(FeArg));
    if (!arg) return;
    const FeToken *t = peek(P);
    arg->line = t->line;
    arg->col = t->col;
    if (t->kind == FE_T_IDENT && is_punct(peek2(P), "=")) {
      arg->name = rb_arena_strndup(P->a, t->loc, (size_t)t->len);
      next(P);
      next(P);
    }
    arg->value = expr(P);
    if (P->failed) return;
    if (is_punct(peek(P), ",")) {
      next(P);
      continue;
    }
    const char *ctx = rb_arena_printf(P->a, " or ',' (to close '(' of '%.*s' at line %d)",
                                      open_for->len, open_for->loc, open->line);
    expect(P, ")", ctx);
    return;
  }
}

/* primary = INT | FLOAT | STRING | "(" expr ")" | IDENT [ arglist { annot } ]
 * annot   = "@" IDENT arglist */
static FeExpr *primary(Parser *P) {
  const FeToken *t = peek(P);
  FeExpr *e;
  switch (t->kind) {
  case FE_T_INT:
    next(P);
    if ((e = new_expr(P, FE_E_INT, t))) e->ival = t->ival;
    return e;
  case FE_T_FLOAT:
    next(P);
    if ((e = new_expr(P, FE_E_FLOAT, t))) e->fval = t->fval;
    return e;
  case FE_T_STRING:
    next(P);
    if ((e = new_expr(P, FE_E_STRING, t))) e->str = t->str;
    return e;
  case FE_T_IDENT:
    if (is_keyword(t)) break;
    next(P);
    e = new_expr(P, FE_E_NAME, t);
    if (!e) return NULL;
    e->str = rb_arena_strndup(P->a, t->loc, (size_t)t->len);
    if (!is_punct(peek(P), "(")) return e;
    e->kind = FE_E_CALL;
    arglist(P, &e->args, &e->nargs, t);
    int cap = 0;
    while (!P->failed && is_punct(peek(P), "@")) {
      next(P);
      FeAnnot *an = push_elem(P, (void **)&e->annots, &e->nannots, &cap, sizeof(FeAnnot));
      if (!an) return NULL;
      const FeToken *nt = peek(P);
      an->line = nt->line;
      an->col = nt->col;
      an->name = expect_ident(P, "an annotation name after '@'");
      if (an->name) arglist(P, &an->args, &an->nargs, nt);
    }
    for (int i = 0; e && i < e->nargs; i++) e = deepen(P, e, e->args[i].value, t);
    for (int i = 0; e && i < e->nannots; i++)
      for (int j = 0; e && j < e->annots[i].nargs; j++) e = deepen(P, e, e->annots[i].args[j].value, t);
    return e;
  case FE_T_PUNCT:
    if (is_punct(t, "(")) {
      next(P);
      e = expr(P);
      expect(P, ")", rb_arena_printf(P->a, " (to close '(' at line %d)", t->line));
      return e;
    }
    break;
  default: break;
  }
  error_at(P, t, "expected an expression, found %s", describe(P, t));
  return NULL;
}

/* unary = "-" unary | primary
 * Every level of the descent (a '(', a call's argument, a '-') passes here,
 * so its count bounds the recursion. */
static FeExpr *unary(Parser *P) {
  const FeToken *t = peek(P);
  if (P->depth >= FE_MAX_DEPTH) {
    too_deep(P, t);
    return NULL;
  }
  P->depth++;
  FeExpr *e;
  if (is_punct(t, "-")) {
    next(P);
    e = new_expr(P, FE_E_NEG, t);
    if (e) e->lhs = unary(P);
    if (e) e = deepen(P, e, e->lhs, t);
  } else e = primary(P);
  P->depth--;
  return e;
}

static FeExpr *binary(Parser *P, const FeToken *t, FeExpr *lhs, FeExpr *rhs) {
  FeExpr *e = new_expr(P, FE_E_BINARY, t);
  if (!e) return NULL;
  e->op = t->loc[0];
  e->lhs = lhs;
  e->rhs = rhs;
  e = deepen(P, e, lhs, t);
  return deepen(P, e, rhs, t);
}

/* term = unary { ("*" | "/" | "%") unary } */
static FeExpr *term(Parser *P) {
  FeExpr *e = unary(P);
  while (!P->failed && (is_punct(peek(P), "*") || is_punct(peek(P), "/") || is_punct(peek(P), "%"))) {
    const FeToken *t = next(P);
    e = binary(P, t, e, unary(P));
  }
  return e;
}

/* expr = term { ("+" | "-") term } */
static FeExpr *expr(Parser *P) {
  FeExpr *e = term(P);
  while (!P->failed && (is_punct(peek(P), "+") || is_punct(peek(P), "-"))) {
    const FeToken *t = next(P);
    e = binary(P, t, e, term(P));
  }
  return e;
}

/* type = IDENT "[" expr { "," expr } "]" */
static void type(Parser *P, FeType *ty) {
  const FeToken *t = peek(P);
  ty->line = t->line;
  ty->col = t->col;
  ty->dtype = expect_ident(P, "a type such as f16[T, 576]");
  const FeToken *open = peek(P);
  if (!expect(P, "[", NULL)) return;
  for (;;) {
    if (ty->rank == IR_MAX_RANK) {
      error_at(P, peek(P), "a tensor has at most %d dimensions", IR_MAX_RANK);
      return;
    }
    ty->dims[ty->rank++] = expr(P);
    if (P->failed) return;
    if (is_punct(peek(P), ",")) {
      next(P);
      continue;
    }
    expect(P, "]", rb_arena_printf(P->a, " or ',' (to close '[' at line %d)", open->line));
    return;
  }
}

static FeStmt *stmt_list(Parser *P, const char *closing, int open_line);

/* After an error in a graph's header, skip its body: up to the '{' and then
 * to the matching '}', so the body's lines are not read as top-level items. */
static void skip_block(Parser *P) {
  while (peek(P)->kind != FE_T_EOF && !is_punct(peek(P), "{")) next(P);
  int depth = 0;
  while (peek(P)->kind != FE_T_EOF) {
    const FeToken *t = next(P);
    if (is_punct(t, "{")) depth++;
    else if (is_punct(t, "}") && --depth == 0) break;
  }
  P->failed = 0;
}

/* stmt = "repeat" IDENT "in" expr ".." expr "{" { stmt } "}"
 *      | "return" expr
 *      | IDENT { "," IDENT } "=" expr */
static FeStmt *stmt(Parser *P) {
  const FeToken *t = peek(P);
  FeStmt *s = rb_arena_alloc(P->a, sizeof *s);
  if (!s) return NULL;
  s->line = t->line;
  s->col = t->col;
  if (is_word(t, "repeat")) {
    s->kind = FE_S_REPEAT;
    if (P->blocks >= FE_MAX_DEPTH) {
      error_at(P, t, "'repeat' nests deeper than %d levels", FE_MAX_DEPTH);
      return s;
    }
    next(P);
    s->var = expect_ident(P, "a loop variable after 'repeat'");
    if (!P->failed && !is_word(peek(P), "in"))
      error_at(P, peek(P), "expected 'in' after the loop variable, found %s", describe(P, peek(P)));
    if (P->failed) return s;
    next(P);
    if (!P->failed) s->lo = expr(P);
    expect(P, "..", " in the range 'lo..hi'");
    if (!P->failed) s->hi = expr(P);
    if (!expect(P, "{", NULL)) return s;
    P->blocks++;
    s->body = stmt_list(P, "repeat", t->line);
    P->blocks--;
    return s;
  }
  if (is_word(t, "return")) {
    next(P);
    s->kind = FE_S_RETURN;
    s->value = expr(P);
    return s;
  }
  s->kind = FE_S_ASSIGN;
  int cap = 0, ccap = 0, ncols = 0;
  for (;;) {
    const FeToken *nt = peek(P);
    const char *name = expect_ident(P, "a statement ('name = op(...)', 'repeat' or 'return')");
    if (!name) return s;
    const char **slot = push_elem(P, (void **)&s->names, &s->nnames, &cap, sizeof(char *));
    int *cslot = push_elem(P, (void **)&s->name_cols, &ncols, &ccap, sizeof(int));
    if (!slot || !cslot) return s;
    *slot = name;
    *cslot = nt->col;
    if (!is_punct(peek(P), ",")) break;
    next(P);
  }
  if (!expect(P, "=", NULL)) return s;
  s->value = expr(P);
  return s;
}

/* { stmt } "}"  -- the body of a graph or repeat, up to its closing brace. */
static FeStmt *stmt_list(Parser *P, const char *closing, int open_line) {
  FeStmt *head = NULL, **tail = &head;
  while (!is_punct(peek(P), "}")) {
    if (peek(P)->kind == FE_T_EOF) {
      const char *ctx = rb_arena_printf(P->a, " (to close '%s' at line %d)", closing, open_line);
      expect(P, "}", ctx);
      return head;
    }
    int line = peek(P)->line, pos = P->pos;
    FeStmt *s = stmt(P);
    if (P->failed) {
      /* A broken repeat header: skip its whole body, braces balanced. */
      if (s && s->kind == FE_S_REPEAT && !s->body) skip_block(P);
      else recover(P, line);
      if (P->pos == pos && !is_punct(peek(P), "}")) next(P); /* always make progress */
      continue;
    }
    if (s) {
      *tail = s;
      tail = &s->next;
    }
  }
  next(P);
  return head;
}

/* graph = "graph" IDENT "(" [ param { "," param } ] ")" "->" type "{" { stmt } "}"
 * param = IDENT ":" type */
static void graph(Parser *P, FeProgram *prog) {
  const FeToken *t = next(P);
  if (prog->has_graph) error_at(P, t, "only one graph per file; the first is at line %d", prog->graph_line);
  prog->has_graph = 1;
  prog->graph_line = t->line;
  prog->graph_col = t->col;
  prog->graph_name = expect_ident(P, "a graph name");
  const FeToken *open = peek(P);
  if (!expect(P, "(", NULL)) return;
  int cap = 0;
  if (!is_punct(peek(P), ")")) {
    for (;;) {
      FeParam *p = push_elem(P, (void **)&prog->params, &prog->nparams, &cap, sizeof(FeParam));
      if (!p) return;
      p->line = peek(P)->line;
      p->col = peek(P)->col;
      p->name = expect_ident(P, "a parameter name");
      expect(P, ":", NULL);
      if (P->failed) return;
      type(P, &p->type);
      if (P->failed) return;
      if (!is_punct(peek(P), ",")) break;
      next(P);
    }
  }
  expect(P, ")", rb_arena_printf(P->a, " or ',' (to close '(' at line %d)", open->line));
  expect(P, "->", " and the return type");
  if (P->failed) return;
  type(P, &prog->ret);
  if (!expect(P, "{", NULL)) return;
  prog->body = stmt_list(P, "graph", t->line);
}

static void graph_or_skip(Parser *P, FeProgram *prog) {
  graph(P, prog);
  if (P->failed) skip_block(P);
}

/* program  = "rabit" INT { toplevel } EOF
 * toplevel = "model" STRING | "let" IDENT "=" expr { "," IDENT "=" expr }
 *          | "quant" "default" "=" expr | graph */
int fe_parse(const FeToken *toks, int ntoks, RbArena *a, IrDiag *d, FeProgram *prog) {
  Parser P = {toks, ntoks, 0, a, d, 0, 0, 0, 0, 0};
  memset(prog, 0, sizeof *prog);
  const FeToken *t = peek(&P);
  if (!is_word(t, "rabit") || peek2(&P)->kind != FE_T_INT) {
    error_at(&P, t, "expected the header 'rabit 1' at the start of the file, found %s",
             describe(&P, t));
    return RB_EUSER;
  }
  next(&P);
  prog->version = (int)next(&P)->ival;
  if (prog->version != 1) {
    error_at(&P, &toks[1], "unsupported IR version %d (this rabitc reads version 1)", prog->version);
    return RB_EUSER;
  }
  int letcap = 0;
  while (peek(&P)->kind != FE_T_EOF) {
    t = peek(&P);
    int pos = P.pos;
    if (is_word(t, "model")) {
      next(&P);
      if (peek(&P)->kind != FE_T_STRING)
        error_at(&P, peek(&P), "expected the model name as a string, found %s", describe(&P, peek(&P)));
      else prog->model = next(&P)->str;
    } else if (is_word(t, "let")) {
      next(&P);
      for (;;) {
        FeLet *l = push_elem(&P, (void **)&prog->lets, &prog->nlets, &letcap, sizeof(FeLet));
        if (!l) return RB_EINTERNAL;
        l->line = peek(&P)->line;
        l->col = peek(&P)->col;
        l->name = expect_ident(&P, "a constant name after 'let'");
        expect(&P, "=", NULL);
        if (!P.failed) l->value = expr(&P);
        if (P.failed || !is_punct(peek(&P), ",")) break;
        next(&P);
      }
    } else if (is_word(t, "quant")) {
      next(&P);
      if (!is_word(peek(&P), "default"))
        error_at(&P, peek(&P), "expected 'default' after 'quant', found %s", describe(&P, peek(&P)));
      else {
        next(&P);
        expect(&P, "=", NULL);
        if (!P.failed) prog->quant_default = expr(&P);
      }
    } else if (is_word(t, "graph")) {
      graph_or_skip(&P, prog);
    } else {
      error_at(&P, t, "expected 'model', 'let', 'quant' or 'graph', found %s", describe(&P, t));
    }
    if (P.failed) {
      /* Resume at the next top-level keyword: reserved, so it cannot hide inside an item. */
      if (P.pos == pos) next(&P);
      while (peek(&P)->kind != FE_T_EOF && !is_toplevel(peek(&P))) next(&P);
      P.failed = 0;
    }
    if (a->oom) return RB_EINTERNAL;
  }
  if (!prog->has_graph && !P.nerr)
    error_at(&P, peek(&P), "the file has no 'graph'; expected 'graph NAME(...) -> TYPE { ... }'");
  return P.nerr ? RB_EUSER : RB_OK;
}
