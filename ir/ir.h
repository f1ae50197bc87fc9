/* ir.h: the graph IR (prefix ir_): diagnostics, the op table, the graph,
 * shape inference, the verifier, the printer and the passes.
 * The frontend lowers source into an IrGraph; codegen lowers an IrGraph into
 * kernel specs. Every op is declared once, in IR_OPS below. */
#ifndef RABIT_IR_H
#define RABIT_IR_H

#include <stdint.h>
#include <stdio.h>

#include "ir/base.h"

/* ==== diag.c: user-facing diagnostics ==== */

/* Collects errors as "path:line:col: error: message", then the source line,
 * then a caret under the column. Library code reports here and returns a
 * status; only main() decides to exit. */
typedef struct IrDiag {
  const char *path;   /* as the user named it; "<stdin>" for - */
  const char *source; /* whole text, NUL-terminated; may be NULL */
  RbBuf out;          /* rendered diagnostics */
  int nerrors;
  int max_errors;     /* stop rendering after this many (0: 20) */
} IrDiag;

void ir_diag_init(IrDiag *d, const char *path, const char *source);
void ir_diag_error(IrDiag *d, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void ir_diag_free(IrDiag *d);

/* ==== ops.c: the op table ==== */

typedef enum { IR_I32, IR_F16, IR_F32 } IrDtype;

#define IR_MAX_RANK 4

/* A dimension is a known integer or a symbol (the token count T). The IR's
 * own limits, which the verifier enforces on every value, size argument and
 * integer attribute: a known dimension is in 1..IR_DIM_MAX, so a product of
 * two of them and a small factor (paths, bytes) is exact in int64, which is
 * what shape rules, weight checks and kernel selection compute in; a value's
 * known dims multiply to at most IR_ELEMS_MAX, so its bytes fit int64 too.
 * What each kernel can index is codegen's to check (codegen.h, "index
 * limits"). Float attributes are used as f32 by every kernel: a value that
 * is not finite, or that rounds to 0 or to inf in f32, is refused. */
#define IR_DIM_MAX 2147483647LL            /* 2^31 - 1 */
#define IR_ELEMS_MAX 1152921504606846976LL /* 2^60 */
typedef struct {
  const char *sym; /* NULL when known */
  int64_t n;
} IrDim;

typedef struct IrType {
  IrDtype dtype;
  int rank;
  IrDim dim[IR_MAX_RANK];
} IrType;

/* Attribute kinds and the attribute table: X(enum, spelling, kind). */
typedef enum { IR_AK_INT, IR_AK_FLOAT, IR_AK_STRING, IR_AK_QUANT } IrAttrKind;

#define IR_ATTRS(X)                           \
  X(IR_A_EPS, "eps", IR_AK_FLOAT)             \
  X(IR_A_HEADS, "heads", IR_AK_INT)           \
  X(IR_A_KV_HEADS, "kv_heads", IR_AK_INT)     \
  X(IR_A_HEAD_DIM, "head_dim", IR_AK_INT)     \
  X(IR_A_ROPE_THETA, "rope_theta", IR_AK_FLOAT) \
  X(IR_A_K, "K", IR_AK_INT)                   \
  X(IR_A_QUANT, "quant", IR_AK_QUANT)         \
  X(IR_A_TIED, "tied", IR_AK_STRING)         \
  X(IR_A_SCALE, "scale", IR_AK_FLOAT)

typedef enum {
#define X(e, s, k) e,
  IR_ATTRS(X)
#undef X
  IR_NATTR
} IrAttr;

#define IR_BIT(a) (1u << (a))

/* How many weight tensors an op binds. */
typedef enum {
  IR_W_NONE,    /* no weights */
  IR_W_ONE,     /* one tensor */
  IR_W_PER_OUT, /* one per integer size: a linear's outputs (fused segments), linear_grad's dy */
  IR_W_TWO,     /* two (gate, up of linear_swiglu) */
} IrWeights;

struct IrGraph;
struct IrNode;
struct IrGrad;
/* A shape rule computes the output types of node n into out[] and returns
 * how many, or -1 after reporting an error at the node. */
typedef int (*IrShapeFn)(const struct IrGraph *g, const struct IrNode *n, struct IrType *out,
                         IrDiag *d);
/* A backward rule (grad.c) appends the backward of forward node `node`, whose
 * output gradients exist, and hands each input its gradient contribution.
 * Returns RB_OK, RB_EUSER (reported) or RB_EINTERNAL. NULL in the table: the
 * grad pass refuses the op (the fused forms, the training ops themselves). */
typedef int (*IrGradFn)(struct IrGrad *s, int node);

/* ntensor of an op whose tensor inputs are one per integer size plus one
 * (linear_grad: dy_1..dy_m, x); ir_op_ntensor gives the count for a node. */
#define IR_NT_PER_INT (-1)

/* The op table. One row per op:
 *   enum, spelling, tensor inputs, integer args (min, max), weights,
 *   allowed attributes, required attributes, quantizable, shares weights,
 *   shape rule, backward rule.
 * A linear with several integer args N1..Nm is a fused linear with m outputs
 * sharing one input; linear_add and linear_swiglu are epilogue-fused forms
 * produced by the fusion pass (and accepted in source, so dumps parse back).
 * The rows after them are what the grad pass appends (accepted in source for
 * the same reason). An op that "shares weights" names weights an earlier op
 * binds (a backward op names its forward's) instead of binding new ones. */
#define IR_AT_ATTN                                                                                 \
  (IR_BIT(IR_A_HEADS) | IR_BIT(IR_A_KV_HEADS) | IR_BIT(IR_A_HEAD_DIM) | IR_BIT(IR_A_ROPE_THETA))
#define IR_AT_LINEAR (IR_BIT(IR_A_QUANT) | IR_BIT(IR_A_K) | IR_BIT(IR_A_TIED))
#define IR_OPS(X)                                                                                  \
  X(IR_EMBED, "embed", 1, 2, 2, IR_W_ONE, 0, 0, 0, 0, ir_shape_embed, ir_grad_embed)               \
  X(IR_RMSNORM, "rmsnorm", 1, 0, 0, IR_W_ONE, IR_BIT(IR_A_EPS), IR_BIT(IR_A_EPS), 0, 0,            \
    ir_shape_rmsnorm, ir_grad_rmsnorm)                                                             \
  X(IR_LINEAR, "linear", 1, 1, 4, IR_W_PER_OUT, IR_AT_LINEAR, 0, 1, 0, ir_shape_linear,           \
    ir_grad_linear)                                                                                \
  X(IR_ATTENTION, "attention", 3, 0, 0, IR_W_NONE, IR_AT_ATTN, IR_AT_ATTN, 0, 0,                  \
    ir_shape_attention, ir_grad_attention)                                                         \
  X(IR_SWIGLU, "swiglu", 2, 0, 0, IR_W_NONE, 0, 0, 0, 0, ir_shape_same2, ir_grad_swiglu)          \
  X(IR_ADD, "add", 2, 0, 0, IR_W_NONE, 0, 0, 0, 0, ir_shape_same2, ir_grad_add)                   \
  X(IR_LINEAR_ADD, "linear_add", 2, 1, 1, IR_W_ONE, IR_BIT(IR_A_QUANT) | IR_BIT(IR_A_K), 0, 1, 0, \
    ir_shape_linear_add, NULL)                                                                     \
  X(IR_LINEAR_SWIGLU, "linear_swiglu", 1, 1, 1, IR_W_TWO, IR_BIT(IR_A_QUANT) | IR_BIT(IR_A_K), 0, \
    1, 0, ir_shape_linear_swiglu, NULL)                                                            \
  X(IR_KL_LOSS, "kl_loss", 2, 0, 0, IR_W_NONE, 0, 0, 0, 0, ir_shape_kl_loss, NULL)                \
  X(IR_HIDDEN_MSE, "hidden_mse", 2, 1, 1, IR_W_NONE, IR_BIT(IR_A_SCALE), IR_BIT(IR_A_SCALE), 0, 0, \
    ir_shape_hidden_mse, NULL)                                                                     \
  X(IR_LINEAR_GRAD, "linear_grad", IR_NT_PER_INT, 1, 4, IR_W_PER_OUT, IR_AT_LINEAR, 0, 1, 1,      \
    ir_shape_linear_grad, NULL)                                                                    \
  X(IR_RMSNORM_GRAD, "rmsnorm_grad", 2, 0, 0, IR_W_ONE, IR_BIT(IR_A_EPS), IR_BIT(IR_A_EPS), 0, 1, \
    ir_shape_rmsnorm_grad, NULL)                                                                   \
  X(IR_ATTENTION_GRAD, "attention_grad", 4, 0, 0, IR_W_NONE, IR_AT_ATTN, IR_AT_ATTN, 0, 0,        \
    ir_shape_attention_grad, NULL)                                                                 \
  X(IR_SWIGLU_GRAD, "swiglu_grad", 3, 0, 0, IR_W_NONE, 0, 0, 0, 0, ir_shape_swiglu_grad, NULL)

typedef enum {
#define X(e, ...) e,
  IR_OPS(X)
#undef X
  IR_NOP
} IrOp;

typedef struct {
  const char *name;
  int ntensor, nint_min, nint_max;
  IrWeights weights;
  uint32_t attrs_allowed, attrs_required;
  int quantizable;
  int shares_weights; /* names weights an earlier op binds (a backward op: its forward's) */
  IrShapeFn shape;
  IrGradFn grad;
} IrOpInfo;

extern const IrOpInfo ir_ops[IR_NOP];
extern const char *const ir_attr_names[IR_NATTR];
extern const IrAttrKind ir_attr_kinds[IR_NATTR];

IrOp ir_op_lookup(const char *name); /* IR_NOP if unknown */
IrAttr ir_attr_lookup(const char *name); /* IR_NATTR if unknown */
const char *ir_dtype_name(IrDtype t);
/* The tensor inputs an op takes with nint integer args (IR_NT_PER_INT resolved). */
int ir_op_ntensor(const IrOpInfo *op, int nint);

/* ==== graph.c: values and nodes ==== */

#define IR_MAX_IN 5 /* linear_grad: dy_1..dy_4, x */
#define IR_MAX_OUT 4
#define IR_MAX_INTS 4


typedef struct {
  IrType type;
  int def;          /* defining node, or -1 for a graph input */
  int def_out;      /* which output of def */
  const char *name; /* the source name, for messages */
} IrValue;

typedef union {
  int64_t i;
  double f;
  const char *s;
  int paths; /* IR_A_QUANT: 0 = none, 1..4 residual binary paths */
} IrAttrVal;

typedef struct IrNode {
  IrOp op;
  int nin, in[IR_MAX_IN];
  int nout, out[IR_MAX_OUT];
  int nint;
  int64_t ints[IR_MAX_INTS];
  uint32_t attr_set;
  IrAttrVal attr[IR_NATTR];
  int nweights;
  const char *weights[IR_MAX_OUT]; /* Hugging Face names, {l} substituted */
  int line, col;                   /* source location, for diagnostics and .cu headers */
  int layer;                       /* repeat index, -1 outside any repeat */
  int dead;                        /* removed by a pass; skipped everywhere */
} IrNode;

typedef struct IrGraph {
  RbArena arena; /* names and strings; freed by ir_graph_free */
  const char *model;
  const char *name;
  int quant_default; /* file default paths, 0 = none */
  IrValue *values;
  int nvalues, capvalues;
  IrNode *nodes;
  int nnodes, capnodes;
  int inputs[8], ninputs;
  IrType ret_type;
  int ret; /* returned value, -1 if none */
  int ret_line, ret_col;
} IrGraph;

IrGraph *ir_graph_new(void);
void ir_graph_free(IrGraph *g);
/* Append a value or node; return its index, or -1 on allocation failure. */
int ir_value_add(IrGraph *g, const IrType *t, int def, int def_out, const char *name);
int ir_node_add(IrGraph *g, const IrNode *n);
int ir_type_equal(const IrType *a, const IrType *b);
int ir_dim_equal(IrDim a, IrDim b);
void ir_type_print(RbBuf *b, const IrType *t);
int ir_node_paths(const IrNode *n); /* quant paths of a quantizable node, 0 = none */

/* ==== shape.c: shape rules (one per op row) and inference ==== */

int ir_shape_embed(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_rmsnorm(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_linear(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_attention(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_same2(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_linear_add(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_linear_swiglu(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_kl_loss(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_hidden_mse(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_linear_grad(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_rmsnorm_grad(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_attention_grad(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);
int ir_shape_swiglu_grad(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d);

/* Compute the output types of node n from its inputs (creating its output
 * values if it has none yet). Returns RB_OK or RB_EUSER with diagnostics. */
int ir_node_infer(IrGraph *g, int node, IrDiag *d);

/* ==== verify.c ==== */

/* Check every invariant a pass may rely on: inputs defined before use, arity
 * and attributes per the op table, quant paths in 1..4, shapes consistent
 * with the shape rules, the IR's limits (IR_DIM_MAX: dims, sizes, f32
 * attributes), weights bound once each, tied names bound, the return
 * type. Run after parsing and after every pass. Returns RB_OK or RB_EUSER. */
int ir_graph_verify(IrGraph *g, IrDiag *d);
/* The IR's limits on node n (IR_DIM_MAX above): 1 when it is within them,
 * else 0 after reporting at the node. ir_node_infer checks it first. */
int ir_node_check_limits(const IrGraph *g, const IrNode *n, IrDiag *d);

/* ==== print.c ==== */

/* Print g as IR text that parses back to the same graph. */
void ir_graph_print(const IrGraph *g, RbBuf *out);

/* ==== fuse.c ==== */

/* Requires a verified graph. Merges linears that share an input (same quant)
 * into one multi-output linear, folds swiglu(gate, up) into linear_swiglu and
 * a single-use linear feeding add into linear_add. Returns the number of
 * rewrites; the caller verifies again. */
int ir_fuse(IrGraph *g);

/* ==== grad.c: the training graph ==== */

typedef struct {
  double gamma; /* weight of the hidden-state MSE; 0 = KL alone (no hidden_mse, no teacher_hidden) */
} IrGradOptions;

/* Requires a verified, unfused graph (linear_add / linear_swiglu are refused
 * with a diagnostic, as is a graph already holding training ops) that returns
 * logits [T, V] and has at least one trainable linear (quant = rabit(...)).
 * Appends, after the unchanged forward nodes: kl_loss(logits, teacher) (the
 * KL and its gradient, the seed); when gamma > 0 one hidden_mse per layer l
 * on the value the last node of repeat iteration l writes, scale = gamma / L
 * (the term scale * mse_l and its gradient); then the backward, one rule per
 * forward node (IR_OPS' last column) in reverse order. Gradients exist only
 * for values that depend on a trainable weight; a value with several uses
 * gets the sum of its contributions, added in the order the backward makes
 * them. New inputs: teacher f32[T, V], then (gamma > 0) teacher_hidden
 * f32[L, T, D]. The graph is renamed "train" and returns the KL loss f32[1].
 * Returns RB_OK, RB_EUSER (reported to d; g may be partly extended and must
 * then be freed) or RB_EINTERNAL. The caller verifies again. */
int ir_grad(IrGraph *g, const IrGradOptions *o, IrDiag *d);

/* The backward rules the op table names (grad.c). */
int ir_grad_embed(struct IrGrad *s, int node);
int ir_grad_rmsnorm(struct IrGrad *s, int node);
int ir_grad_linear(struct IrGrad *s, int node);
int ir_grad_attention(struct IrGrad *s, int node);
int ir_grad_swiglu(struct IrGrad *s, int node);
int ir_grad_add(struct IrGrad *s, int node);

#endif
