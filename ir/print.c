/* print.c: the graph as IR text that parses back to the same graph.
 * Values are renamed t0, t1, ... in print order and every attribute is
 * explicit (quant included), so the text does not depend on file defaults and
 * printing a reparsed graph gives the same text. */
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

/* The shortest %g form that reads back as the same double. */
static void print_double(RbBuf *b, double v) {
  char s[40];
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(s, sizeof s, "%.*g", prec, v);
    if (strtod(s, NULL) == v) break;
  }
  rb_buf_puts(b, s);
  /* Keep it a float literal so it reads back as one. */
  if (!strpbrk(s, ".eEn")) rb_buf_puts(b, ".0");
}

static void print_string(RbBuf *b, const char *s) {
  rb_buf_puts(b, "\"");
  for (; *s; s++) { /* the escapes the lexer reads back; a raw newline would end the string */
    if (*s == '"' || *s == '\\') rb_buf_printf(b, "\\%c", *s);
    else if (*s == '\n') rb_buf_puts(b, "\\n");
    else if (*s == '\t') rb_buf_puts(b, "\\t");
    else rb_buf_put(b, s, 1);
  }
  rb_buf_puts(b, "\"");
}

static void print_value(RbBuf *b, const IrGraph *g, const int *names, int v) {
  if (g->values[v].def < 0) rb_buf_puts(b, g->values[v].name);
  else rb_buf_printf(b, "t%d", names[v]);
}

static void print_node(RbBuf *b, const IrGraph *g, const IrNode *n, int *names, int *next) {
  rb_buf_puts(b, "  ");
  for (int i = 0; i < n->nout; i++) {
    names[n->out[i]] = (*next)++;
    rb_buf_printf(b, "%st%d", i ? ", " : "", names[n->out[i]]);
  }
  rb_buf_printf(b, " = %s(", ir_ops[n->op].name);
  int first = 1;
  for (int i = 0; i < n->nin; i++, first = 0) {
    if (!first) rb_buf_puts(b, ", ");
    print_value(b, g, names, n->in[i]);
  }
  for (int i = 0; i < n->nint; i++, first = 0) rb_buf_printf(b, "%s%lld", first ? "" : ", ", (long long)n->ints[i]);
  for (int a = 0; a < IR_NATTR; a++) {
    int quant = a == IR_A_QUANT && ir_ops[n->op].quantizable;
    if (!(n->attr_set & IR_BIT(a)) && !quant) continue;
    rb_buf_printf(b, "%s%s = ", first ? "" : ", ", ir_attr_names[a]);
    first = 0;
    switch (ir_attr_kinds[a]) {
    case IR_AK_INT: rb_buf_printf(b, "%lld", (long long)n->attr[a].i); break;
    case IR_AK_FLOAT: print_double(b, n->attr[a].f); break;
    case IR_AK_STRING: print_string(b, n->attr[a].s); break;
    case IR_AK_QUANT: {
      int p = ir_node_paths(n);
      if (p) rb_buf_printf(b, "rabit(paths = %d)", p);
      else rb_buf_puts(b, "none");
      break;
    }
    }
  }
  rb_buf_puts(b, ")");
  if (n->nweights) {
    rb_buf_puts(b, " @weights(");
    for (int i = 0; i < n->nweights; i++) {
      if (i) rb_buf_puts(b, ", ");
      print_string(b, n->weights[i]);
    }
    rb_buf_puts(b, ")");
  }
  rb_buf_puts(b, "\n");
}

void ir_graph_print(const IrGraph *g, RbBuf *b) {
  int *names = rb_calloc((size_t)g->nvalues + 1, sizeof(int));
  if (!names) {
    b->oom = 1;
    return;
  }
  rb_buf_puts(b, "rabit 1\n");
  if (g->model) {
    rb_buf_puts(b, "model ");
    print_string(b, g->model);
    rb_buf_puts(b, "\n");
  }
  rb_buf_printf(b, "\ngraph %s(", g->name ? g->name : "main");
  for (int i = 0; i < g->ninputs; i++) {
    const IrValue *v = &g->values[g->inputs[i]];
    rb_buf_printf(b, "%s%s: ", i ? ", " : "", v->name);
    ir_type_print(b, &v->type);
  }
  rb_buf_puts(b, ") -> ");
  ir_type_print(b, &g->ret_type);
  rb_buf_puts(b, " {\n");
  int next = 0;
  for (int i = 0; i < g->nnodes; i++)
    if (!g->nodes[i].dead) print_node(b, g, &g->nodes[i], names, &next);
  if (g->ret >= 0) {
    rb_buf_puts(b, "  return ");
    print_value(b, g, names, g->ret);
    rb_buf_puts(b, "\n");
  }
  rb_buf_puts(b, "}\n");
  rb_free(names);
}
