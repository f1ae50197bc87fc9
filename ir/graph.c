/* graph.c: the graph's storage: values, nodes, types. */
#include <string.h>

#include "ir/ir.h"

IrGraph *ir_graph_new(void) {
  IrGraph *g = rb_calloc(1, sizeof *g);
  if (g) g->ret = -1;
  return g;
}

void ir_graph_free(IrGraph *g) {
  if (!g) return;
  rb_arena_free(&g->arena);
  rb_free(g->values);
  rb_free(g->nodes);
  rb_free(g);
}

/* Grow an array of elem-sized items to hold one more. */
static int grow(void **items, int *cap, int n, size_t elem) {
  if (n < *cap) return 1;
  int ncap = *cap ? *cap * 2 : 64;
  void *p = rb_realloc(*items, (size_t)ncap * elem);
  if (!p) return 0;
  *items = p;
  *cap = ncap;
  return 1;
}

int ir_value_add(IrGraph *g, const IrType *t, int def, int def_out, const char *name) {
  if (!grow((void **)&g->values, &g->capvalues, g->nvalues, sizeof(IrValue))) return -1;
  IrValue *v = &g->values[g->nvalues];
  v->type = *t;
  v->def = def;
  v->def_out = def_out;
  v->name = name;
  return g->nvalues++;
}

int ir_node_add(IrGraph *g, const IrNode *n) {
  if (!grow((void **)&g->nodes, &g->capnodes, g->nnodes, sizeof(IrNode))) return -1;
  g->nodes[g->nnodes] = *n;
  return g->nnodes++;
}

int ir_dim_equal(IrDim a, IrDim b) {
  if (a.sym || b.sym) return a.sym && b.sym && strcmp(a.sym, b.sym) == 0;
  return a.n == b.n;
}

int ir_type_equal(const IrType *a, const IrType *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (!ir_dim_equal(a->dim[i], b->dim[i])) return 0;
  return 1;
}

void ir_type_print(RbBuf *b, const IrType *t) {
  rb_buf_printf(b, "%s[", ir_dtype_name(t->dtype));
  for (int i = 0; i < t->rank; i++) {
    if (i) rb_buf_puts(b, ", ");
    if (t->dim[i].sym) rb_buf_puts(b, t->dim[i].sym);
    else rb_buf_printf(b, "%lld", (long long)t->dim[i].n);
  }
  rb_buf_puts(b, "]");
}

int ir_node_paths(const IrNode *n) {
  if (!ir_ops[n->op].quantizable || !(n->attr_set & IR_BIT(IR_A_QUANT))) return 0;
  return n->attr[IR_A_QUANT].paths;
}
