/* test_roundtrip: every sample prints as IR that parses back to the same
 * graph, after verification and after fusion; --paths overrides only ops
 * without their own quant. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "tests/common/check.h"


static IrGraph *compile(const char *path, const char *src, int paths) {
  IrDiag d;
  ir_diag_init(&d, path, src);
  FeOptions o = {paths, 0};
  IrGraph *g = NULL;
  int rc = fe_compile(path, src, &o, &d, &g);
  if (rc == RB_OK) rc = ir_graph_verify(g, &d);
  if (rc != RB_OK) {
    printf("%s", d.out.data ? d.out.data : "");
    ir_graph_free(g);
    g = NULL;
  }
  ir_diag_free(&d);
  return g;
}

static char *print(const IrGraph *g) {
  RbBuf b = {0};
  ir_graph_print(g, &b);
  return b.data;
}

/* Structural equality of the live nodes, in order, with values matched by position. */
static int graphs_equal(const IrGraph *a, const IrGraph *b) {
  int ia = 0, ib = 0;
  int *map = calloc((size_t)a->nvalues + 1, sizeof(int)); /* value of a -> value of b */
  for (int i = 0; i < a->nvalues; i++) map[i] = -1;
  if (a->ninputs != b->ninputs) goto differ;
  for (int i = 0; i < a->ninputs; i++) map[a->inputs[i]] = b->inputs[i];
  for (;;) {
    while (ia < a->nnodes && a->nodes[ia].dead) ia++;
    while (ib < b->nnodes && b->nodes[ib].dead) ib++;
    if (ia == a->nnodes || ib == b->nnodes) break;
    const IrNode *x = &a->nodes[ia++], *y = &b->nodes[ib++];
    if (x->op != y->op || x->nin != y->nin || x->nout != y->nout || x->nint != y->nint ||
        x->attr_set != y->attr_set || x->nweights != y->nweights)
      goto differ;
    for (int i = 0; i < x->nin; i++)
      if (map[x->in[i]] != y->in[i]) goto differ;
    for (int i = 0; i < x->nint; i++)
      if (x->ints[i] != y->ints[i]) goto differ;
    for (int i = 0; i < x->nweights; i++)
      if (strcmp(x->weights[i], y->weights[i])) goto differ;
    for (int t = 0; t < IR_NATTR; t++) {
      if (!(x->attr_set & IR_BIT(t))) continue;
      const IrAttrVal *u = &x->attr[t], *v = &y->attr[t];
      int same = ir_attr_kinds[t] == IR_AK_INT     ? u->i == v->i
                 : ir_attr_kinds[t] == IR_AK_FLOAT ? u->f == v->f
                 : ir_attr_kinds[t] == IR_AK_QUANT ? u->paths == v->paths
                                                   : strcmp(u->s, v->s) == 0;
      if (!same) goto differ;
    }
    for (int i = 0; i < x->nout; i++) {
      if (!ir_type_equal(&a->values[x->out[i]].type, &b->values[y->out[i]].type)) goto differ;
      map[x->out[i]] = y->out[i];
    }
  }
  while (ia < a->nnodes && a->nodes[ia].dead) ia++;
  while (ib < b->nnodes && b->nodes[ib].dead) ib++;
  if (ia != a->nnodes || ib != b->nnodes || map[a->ret] != b->ret) goto differ;
  free(map);
  return 1;
differ:
  free(map);
  return 0;
}

static void roundtrip(const char *path, const IrGraph *g, const char *stage) {
  char *p1 = print(g);
  IrGraph *g2 = compile(path, p1, 0);
  CHECK(g2, "%s %s: printed IR does not compile", path, stage);
  if (g2) {
    char *p2 = print(g2);
    CHECK(strcmp(p1, p2) == 0, "%s %s: printing the reparsed graph gives different text", path, stage);
    CHECK(graphs_equal(g, g2), "%s %s: reparsed graph differs", path, stage);
    CHECK(cg_graph_params(g) == cg_graph_params(g2), "%s %s: parameter count changed", path, stage);
    free(p2);
  }
  ir_graph_free(g2);
  free(p1);
}

/* --paths overrides the default of every op without its own quant and no
 * other: compiled with --paths 1 and --paths 4, each quantizable op either
 * keeps its own quant in both or follows the override in both. */
static void check_paths_override(const char *path, const char *src) {
  IrGraph *base = compile(path, src, 0), *one = compile(path, src, 1), *four = compile(path, src, 4);
  if (base && one && four) {
    for (int i = 0; i < base->nnodes; i++) {
      if (!ir_ops[base->nodes[i].op].quantizable) continue;
      int p0 = ir_node_paths(&base->nodes[i]), p1 = ir_node_paths(&one->nodes[i]),
          p4 = ir_node_paths(&four->nodes[i]);
      CHECK((p1 == p0 && p4 == p0) || (p1 == 1 && p4 == 4),
            "%s: node %d has paths %d, %d with --paths 1, 4 (file: %d)", path, i, p1, p4, p0);
    }
  }
  ir_graph_free(base);
  ir_graph_free(one);
  ir_graph_free(four);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "samples";
  DIR *dp = opendir(dir);
  if (!dp) {
    printf("cannot open %s\n", dir);
    return 1;
  }
  struct dirent *e;
  int nsamples = 0;
  while ((e = readdir(dp))) {
    size_t n = strlen(e->d_name);
    if (n < 4 || strcmp(e->d_name + n - 3, ".ir")) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    RbBuf src = {0};
    if (rb_read_file(path, &src)) {
      CHECK(0, "cannot read %s", path);
      continue;
    }
    nsamples++;
    IrGraph *g = compile(path, src.data, 0);
    CHECK(g, "%s does not compile", path);
    if (g) {
      roundtrip(path, g, "after-verify");
      int rewrites = ir_fuse(g);
      IrDiag d;
      ir_diag_init(&d, path, src.data);
      CHECK(ir_graph_verify(g, &d) == RB_OK, "%s: fused graph fails verification:\n%s", path,
            d.out.data ? d.out.data : "");
      ir_diag_free(&d);
      roundtrip(path, g, "after-fusion");
      printf("%s: %d fusion rewrites, %llu parameters\n", path, rewrites,
             (unsigned long long)cg_graph_params(g));
    }
    check_paths_override(path, src.data);
    ir_graph_free(g);
    rb_buf_free(&src);
  }
  closedir(dp);
  CHECK(nsamples >= 4, "expected at least 4 samples in %s, found %d", dir, nsamples);
  return CHECK_SUMMARY();
}
