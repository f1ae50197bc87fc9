/* frontend.h: the text IR's lexer, parser and lowering into an ir graph (prefix fe_).
 * tokenize.c turns text into tokens, parse.c tokens into an AST, lower.c the
 * AST into an IrGraph: constants folded, repeats unrolled, weight names
 * substituted, shapes inferred. Errors go to an IrDiag; nothing here exits. */
#ifndef RABIT_FRONTEND_H
#define RABIT_FRONTEND_H

#include "ir/ir.h"

/* Limits on hostile input, each named in the error that enforces it. The
 * depth bounds every recursive walk of the AST (the parser's descent,
 * constant evaluation, lowering of nested calls): a node's depth counts its
 * operators, parentheses, calls and negations, so a flat sum of many terms
 * is as deep as its left-leaning tree. */
#define FE_MAX_SOURCE_BYTES ((size_t)16 << 20) /* an IR file: 16 MiB */
#define FE_MAX_TOKENS (1 << 22)                /* tokens in a file */
#define FE_MAX_DEPTH 256                       /* of an expression, and of nested 'repeat's */

/* ==== tokenize.c ==== */

typedef enum { FE_T_EOF, FE_T_IDENT, FE_T_INT, FE_T_FLOAT, FE_T_STRING, FE_T_PUNCT } FeTokKind;

typedef struct {
  FeTokKind kind;
  const char *loc; /* into the source */
  int len;
  int line, col;
  union {           /* by kind: a file may hold FE_MAX_TOKENS of these */
    int64_t ival;   /* FE_T_INT */
    double fval;    /* FE_T_FLOAT */
    const char *str; /* FE_T_STRING: the decoded literal */
  };
} FeToken;

/* Tokenize src into *toks (arena-allocated, ending with FE_T_EOF). Lexical
 * errors are reported to d; the bad character is skipped so that parsing can
 * go on and report more. More than FE_MAX_TOKENS tokens is an error that
 * stops it. */
int fe_tokenize(const char *src, RbArena *a, IrDiag *d, FeToken **toks, int *ntoks);

/* ==== parse.c: the AST ==== */

typedef enum { FE_E_INT, FE_E_FLOAT, FE_E_STRING, FE_E_NAME, FE_E_CALL, FE_E_BINARY, FE_E_NEG } FeExprKind;

typedef struct FeExpr FeExpr;

typedef struct {
  const char *name; /* NULL for a positional argument */
  FeExpr *value;
  int line, col;
} FeArg;

typedef struct {
  const char *name; /* "weights" */
  FeArg *args;
  int nargs;
  int line, col;
} FeAnnot;

struct FeExpr {
  FeExprKind kind;
  int line, col;
  int64_t ival;
  double fval;
  const char *str; /* string literal, name, or callee */
  char op;         /* FE_E_BINARY: + - * / % */
  FeExpr *lhs, *rhs;
  FeArg *args;
  int nargs;
  FeAnnot *annots;
  int nannots;
  int depth; /* 1 for a leaf; at most FE_MAX_DEPTH */
};

typedef struct {
  const char *dtype;
  int line, col;
  FeExpr *dims[IR_MAX_RANK];
  int rank;
} FeType;

typedef enum { FE_S_ASSIGN, FE_S_REPEAT, FE_S_RETURN } FeStmtKind;

typedef struct FeStmt FeStmt;
struct FeStmt {
  FeStmtKind kind;
  int line, col;
  const char **names; /* FE_S_ASSIGN: the bound names */
  int *name_cols;
  int nnames;
  FeExpr *value; /* FE_S_ASSIGN, FE_S_RETURN */
  const char *var; /* FE_S_REPEAT */
  FeExpr *lo, *hi;
  FeStmt *body;
  FeStmt *next;
};

typedef struct {
  const char *name;
  FeExpr *value;
  int line, col;
} FeLet;

typedef struct {
  const char *name;
  FeType type;
  int line, col;
} FeParam;

typedef struct {
  int version;
  const char *model;
  FeLet *lets;
  int nlets;
  FeExpr *quant_default; /* NULL when the file has none */
  const char *graph_name;
  int graph_line, graph_col;
  FeParam *params;
  int nparams;
  FeType ret;
  FeStmt *body;
  int has_graph;
} FeProgram;

/* Parse tokens into prog (arena-allocated). Returns RB_OK, or RB_EUSER after
 * reporting every syntax error it could find to d. */
int fe_parse(const FeToken *toks, int ntoks, RbArena *a, IrDiag *d, FeProgram *prog);

/* ==== lower.c ==== */

typedef struct {
  int paths; /* --paths k: overrides the file's default, not an op's own quant; 0 = no override */
  int dense; /* every linear unquantized, whatever the file says: the fp16 baseline */
} FeOptions;

#define FE_DEFAULT_PATHS 2 /* quant default when a file names none: 2-bit */
#define FE_MAX_NODES 100000

/* Lower prog into a new graph. Returns RB_OK with *out set, or RB_EUSER after
 * reporting errors (the partial graph is freed). Shapes are inferred; the
 * caller runs ir_graph_verify. */
int fe_lower(const FeProgram *prog, const FeOptions *opt, IrDiag *d, IrGraph **out);

/* Convenience: tokenize + parse + lower the text src (path names it in
 * diagnostics); a src over FE_MAX_SOURCE_BYTES is refused, naming the cap. */
int fe_compile(const char *path, const char *src, const FeOptions *opt, IrDiag *d, IrGraph **out);

#endif
