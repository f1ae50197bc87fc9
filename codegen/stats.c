/* stats.c: the layer table rabitc prints, parameter counts and the bytes
 * each op's weights take in the packed format. */
#include <string.h>

#include "codegen/codegen.h"
#include "ir/ir.h"

static int64_t in_width(const IrGraph *g, const IrNode *n) {
  return g->values[n->in[0]].type.dim[1].n;
}

/* Parameters a node owns (a tied linear owns none: it reuses the embedding). */
static uint64_t node_params(const IrGraph *g, const IrNode *n) {
  switch (n->op) {
  case IR_EMBED: return (uint64_t)(n->ints[0] * n->ints[1]);
  case IR_RMSNORM: return (uint64_t)in_width(g, n);
  case IR_LINEAR:
  case IR_LINEAR_ADD: {
    if (n->attr_set & IR_BIT(IR_A_TIED)) return 0;
    uint64_t p = 0;
    for (int i = 0; i < n->nint; i++) p += (uint64_t)(n->ints[i] * in_width(g, n));
    return p;
  }
  case IR_LINEAR_SWIGLU: return 2 * (uint64_t)(n->ints[0] * in_width(g, n));
  default: return 0;
  }
}

/* Bytes of the canonical packed format: bits, g and h for every path of every segment. */
static uint64_t packed_bytes(const IrGraph *g, const IrNode *n) {
  int k = ir_node_paths(n);
  if (!k) return 2 * node_params(g, n);
  int64_t K = in_width(g, n);
  uint64_t total = 0;
  int nseg = n->op == IR_LINEAR_SWIGLU ? 2 : n->nint;
  for (int i = 0; i < nseg; i++) total += cg_packed_bytes(k, n->ints[n->op == IR_LINEAR_SWIGLU ? 0 : i], K);
  return total;
}

static void node_shape(const IrGraph *g, const IrNode *n, char *s, size_t len) {
  RbBuf b = {0};
  switch (n->op) {
  case IR_EMBED: rb_buf_printf(&b, "%lld x %lld", (long long)n->ints[0], (long long)n->ints[1]); break;
  case IR_RMSNORM: rb_buf_printf(&b, "%lld", (long long)in_width(g, n)); break;
  case IR_LINEAR:
  case IR_LINEAR_ADD:
  case IR_LINEAR_SWIGLU:
    for (int i = 0; i < n->nint; i++) rb_buf_printf(&b, "%s%lld", i ? "+" : "", (long long)n->ints[i]);
    if (n->op == IR_LINEAR_SWIGLU) rb_buf_printf(&b, "(x2)");
    rb_buf_printf(&b, " x %lld", (long long)in_width(g, n));
    break;
  case IR_ATTENTION:
    rb_buf_printf(&b, "H=%lld HKV=%lld HD=%lld", (long long)n->attr[IR_A_HEADS].i,
                  (long long)n->attr[IR_A_KV_HEADS].i, (long long)n->attr[IR_A_HEAD_DIM].i);
    break;
  default: ir_type_print(&b, &g->values[n->out[0]].type); break;
  }
  snprintf(s, len, "%s", b.data ? b.data : "");
  rb_buf_free(&b);
}

uint64_t cg_graph_params(const IrGraph *g) {
  uint64_t p = 0;
  for (int i = 0; i < g->nnodes; i++)
    if (!g->nodes[i].dead) p += node_params(g, &g->nodes[i]);
  return p;
}

typedef struct {
  IrOp op;
  char shape[64];
  int paths, count, tied;
  uint64_t params, bytes;
} Row;

void cg_graph_summary(const IrGraph *g, RbBuf *out) {
  Row *rows = rb_calloc((size_t)g->nnodes + 1, sizeof(Row));
  if (!rows) {
    out->oom = 1;
    return;
  }
  int nrows = 0;
  uint64_t total = 0, quant_params = 0, bytes = 0, fp16_bytes = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    Row r = {n->op, "", ir_node_paths(n), 1, (n->attr_set & IR_BIT(IR_A_TIED)) != 0,
             node_params(g, n), packed_bytes(g, n)};
    node_shape(g, n, r.shape, sizeof r.shape);
    total += r.params;
    bytes += r.bytes;
    fp16_bytes += 2 * r.params;
    if (r.paths) quant_params += r.params;
    int j = 0;
    while (j < nrows && !(rows[j].op == r.op && rows[j].paths == r.paths &&
                          rows[j].tied == r.tied && strcmp(rows[j].shape, r.shape) == 0))
      j++;
    if (j == nrows) rows[nrows++] = r;
    else {
      rows[j].count++;
      rows[j].params += r.params;
      rows[j].bytes += r.bytes;
    }
  }
  rb_buf_printf(out, "%-14s %-24s %5s %6s %14s %12s\n", "op", "shape (N x K)", "paths", "count",
                "params", "weights MB");
  for (int j = 0; j < nrows; j++) {
    const Row *r = &rows[j];
    char paths[8];
    snprintf(paths, sizeof paths, "%s", r->paths ? "" : "-");
    if (r->paths) snprintf(paths, sizeof paths, "%d", r->paths);
    rb_buf_printf(out, "%-14s %-24s %5s %6d %14llu %12.2f%s\n", ir_ops[r->op].name, r->shape,
                  paths, r->count, (unsigned long long)r->params, r->bytes / 1e6,
                  r->tied ? "  (tied)" : "");
  }
  rb_buf_printf(out,
                "total: %llu parameters (%.1fM), %.1fM quantized; weights %.1f MB packed vs %.1f MB fp16\n",
                (unsigned long long)total, total / 1e6, quant_params / 1e6, bytes / 1e6,
                fp16_bytes / 1e6);
  rb_free(rows);
}
