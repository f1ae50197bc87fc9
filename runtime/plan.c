/* plan.c: the plan file, the versioned contract between rabitc and the
 * runtime and trainer. A line-oriented text format, so that it diffs and
 * reads well:
 *
 *   rabit-plan 3
 *   model smollm2-135m
 *   ir-hash <32 hex>          XXH3-128 of the IR text
 *   target cuda
 *   arch sm_90
 *   compiler nvrtc 13.0 builtins <hex>
 *   rabitc 0.1.0
 *   counts kernels=26 steps=123 values=250
 *   return value=249 dtype=f32
 *   kernel 0 key=<32 hex> entry=<name> schedule=default grid=.. block=.. smem=.. grow=1 per=8 small=0,0,0 kind=linear ...
 *   step 0 op=embed line=13 layer=-1 paths=0 main=5 rope=- repack=- buckets=- in=0 out=1 weights=model.embed_tokens ...
 *
 * Every kernel line carries its whole op and schedule (floats in C's exact %a
 * form), so a missing binary is rebuilt from the plan alone, and its launch
 * geometry, so the runtime launches without asking codegen. A step names its
 * kernels by role. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "ir/ir.h"
#include "runtime/runtime.h"

/* The targets a plan can name. */
static const CgTarget *const targets[] = {&cg_target_cuda, &cg_target_host};

const CgTarget *rt_plan_target(const RtPlan *p) {
  for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
    if (strcmp(targets[i]->name, p->target) == 0) return targets[i];
  return NULL;
}

/* ---- building ---- */

int rt_plan_make(RtPlan **out, const IrGraph *g, const char *ir_text, const CgTarget *t, const char *arch,
                 const CgKernelSet *ks, const RtBuilt *built, RbBuf *err) {
  RtPlan *p = rb_calloc(1, sizeof *p);
  if (!p) return RB_EINTERNAL;
  p->version = RT_PLAN_VERSION;
  snprintf(p->model, sizeof p->model, "%s", g->model ? g->model : "unnamed");
  snprintf(p->target, sizeof p->target, "%s", t->name);
  snprintf(p->arch, sizeof p->arch, "%s", arch);
  const RtCompiler *cc = rt_compiler_find(t->compiler);
  snprintf(p->compiler, sizeof p->compiler, "%s", cc ? cc->id() : t->compiler);
  snprintf(p->tool, sizeof p->tool, "%s", RABIT_VERSION);
  XXH128_hash_t h = XXH3_128bits(ir_text, strlen(ir_text));
  p->ir_hash.hi = h.high64;
  p->ir_hash.lo = h.low64;
  p->nkernels = ks->n;
  p->kernels = rb_calloc((size_t)ks->n + 1, sizeof *p->kernels);
  int *value_id = rb_calloc((size_t)g->nvalues + 1, sizeof(int));
  p->steps = rb_calloc((size_t)g->nnodes + 1, sizeof *p->steps);
  int rc = RB_EINTERNAL;
  if (!p->kernels || !value_id || !p->steps) goto fail;
  for (int i = 0; i < ks->n; i++) {
    RtPlanKernel *k = &p->kernels[i];
    k->kernel = ks->k[i].kernel;
    k->key = built[i].key;
    k->from = ks->k[i].from;
    snprintf(k->entry, sizeof k->entry, "%s", built[i].entry);
    /* Geometry once, here: launches read it from the plan. */
    if ((rc = t->geometry(&k->kernel, &k->geometry, err)) != RB_OK) goto fail;
  }
  rc = RB_EINTERNAL;
  /* Values are numbered in definition order, graph inputs first. */
  for (int i = 0; i < g->nvalues; i++) value_id[i] = -1;
  for (int i = 0; i < g->ninputs; i++) value_id[g->inputs[i]] = p->nvalues++;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    RtPlanStep *s = &p->steps[p->nsteps++];
    s->op = n->op;
    s->line = n->line;
    s->layer = n->layer;
    s->paths = ir_node_paths(n);
    s->kernels = ks->node[i];
    s->nin = n->nin;
    for (int j = 0; j < n->nin; j++) s->in[j] = value_id[n->in[j]];
    s->nout = n->nout;
    for (int j = 0; j < n->nout; j++) {
      s->out[j] = value_id[n->out[j]] = p->nvalues++;
      s->width[j] = (int)g->values[n->out[j]].type.dim[1].n;
    }
    s->nweights = n->nweights;
    for (int j = 0; j < n->nweights; j++)
      if (!(s->weights[j] = rb_strdup(n->weights[j]))) goto fail;
    if (n->attr_set & IR_BIT(IR_A_TIED)) {
      s->tied = 1;
      s->nweights = 1;
      if (!(s->weights[0] = rb_strdup(n->attr[IR_A_TIED].s))) goto fail;
    }
    if (s->kernels.repack >= 0) s->layout_bytes = t->layout_bytes(&p->kernels[s->kernels.repack].kernel.op);
  }
  p->ret = g->ret >= 0 ? value_id[g->ret] : -1;
  p->ret_f32 = g->ret_type.dtype == IR_F32;
  rb_free(value_id);
  *out = p;
  return RB_OK;
fail:
  rb_free(value_id);
  rt_plan_free(p);
  return rc;
}

void rt_plan_free(RtPlan *p) {
  if (!p) return;
  for (int i = 0; i < p->nsteps; i++)
    for (int j = 0; j < p->steps[i].nweights; j++) rb_free(p->steps[i].weights[j]);
  rb_free(p->steps);
  rb_free(p->kernels);
  rb_free(p);
}

/* ---- text ---- */

static void put_list(RbBuf *b, const char *key, const int *v, int n) {
  rb_buf_printf(b, " %s=", key);
  if (!n) rb_buf_puts(b, "-");
  for (int i = 0; i < n; i++) rb_buf_printf(b, "%s%d", i ? "," : "", v[i]);
}

static void put_kernel(RbBuf *b, const CgKernel *k) {
  const CgOp *s = &k->op;
  const CgSchedule *c = &k->sched;
  rb_buf_printf(b, " kind=%s strategy=%s batch=%d K=%d N=", cg_kind_name(s->kind), cg_strategy_name(c->strategy),
                c->batch_max, s->K);
  if (!s->nseg) rb_buf_puts(b, "-");
  for (int i = 0; i < s->nseg; i++) rb_buf_printf(b, "%s%d", i ? "," : "", s->N[i]);
  rb_buf_printf(b, " paths=%d epilogue=%s tile=%d,%d,%d,%d dim=%d vocab=%d heads=%d kv_heads=%d"
                   " head_dim=%d max_ctx=%d eps=%a rope_theta=%a",
                s->paths, cg_epilogue_name(s->epilogue), c->tile[0], c->tile[1], c->tile[2], c->tile[3], s->dim,
                s->vocab, s->heads, s->kv_heads, s->head_dim, s->max_ctx, (double)s->eps, (double)s->rope_theta);
}

static void put_geometry(RbBuf *b, const CgGeometry *g) {
  rb_buf_printf(b, " grid=%u,%u,%u block=%u,%u,%u smem=%u grow=%d per=%u small=%u,%u,%u", g->grid[0], g->grid[1],
                g->grid[2], g->block[0], g->block[1], g->block[2], g->smem, g->grow_axis, g->n_per_block,
                g->n_small, g->block_x_small, g->grid_x_small);
}

static void put_role(RbBuf *b, const char *key, int v) {
  if (v < 0) rb_buf_printf(b, " %s=-", key);
  else rb_buf_printf(b, " %s=%d", key, v);
}

void rt_plan_format(const RtPlan *p, RbBuf *b) {
  char hex[33];
  rt_key_hex(p->ir_hash, hex);
  rb_buf_printf(b, "rabit-plan %d\nmodel %s\nir-hash %s\ntarget %s\narch %s\ncompiler %s\nrabitc %s\n",
                p->version, p->model, hex, p->target, p->arch, p->compiler, p->tool);
  rb_buf_printf(b, "counts kernels=%d steps=%d values=%d\n", p->nkernels, p->nsteps, p->nvalues);
  rb_buf_printf(b, "return value=%d dtype=%s\n", p->ret, p->ret_f32 ? "f32" : "f16");
  for (int i = 0; i < p->nkernels; i++) {
    const RtPlanKernel *k = &p->kernels[i];
    rt_key_hex(k->key, hex);
    rb_buf_printf(b, "kernel %d key=%s entry=%s schedule=%s", i, hex, k->entry, cg_schedule_source_name(k->from));
    put_geometry(b, &k->geometry);
    put_kernel(b, &k->kernel);
    rb_buf_puts(b, "\n");
  }
  for (int i = 0; i < p->nsteps; i++) {
    const RtPlanStep *s = &p->steps[i];
    rb_buf_printf(b, "step %d op=%s line=%d layer=%d paths=%d", i, ir_ops[s->op].name, s->line, s->layer, s->paths);
    put_role(b, "main", s->kernels.main);
    put_role(b, "rope", s->kernels.rope);
    put_role(b, "repack", s->kernels.repack);
    if (s->kernels.nll >= 0) put_role(b, "nll", s->kernels.nll); /* optional: plans before it load */
    if (s->kernels.planes >= 0) put_role(b, "planes", s->kernels.planes); /* optional likewise */
    put_list(b, "buckets", s->kernels.bucket, s->kernels.nbucket);
    put_list(b, "in", s->in, s->nin);
    put_list(b, "out", s->out, s->nout);
    put_list(b, "width", s->width, s->nout);
    rb_buf_printf(b, " tied=%d", s->tied);
    rb_buf_puts(b, " weights=");
    if (!s->nweights) rb_buf_puts(b, "-");
    for (int j = 0; j < s->nweights; j++) rb_buf_printf(b, "%s%s", j ? "," : "", s->weights[j]);
    rb_buf_printf(b, " layout=%zu\n", s->layout_bytes);
  }
}

/* A weight name must survive the format: no spaces, commas or '='. */
static const char *bad_weight_name(const RtPlan *p) {
  for (int i = 0; i < p->nsteps; i++)
    for (int j = 0; j < p->steps[i].nweights; j++)
      if (strpbrk(p->steps[i].weights[j], " \t\n,=") || !p->steps[i].weights[j][0])
        return p->steps[i].weights[j];
  return NULL;
}

int rt_plan_write(const char *path, const RtPlan *p, RbBuf *err) {
  const char *bad = bad_weight_name(p);
  if (bad) {
    rb_buf_printf(err, "weight name \"%s\" cannot go into a plan (spaces, commas and '=' are not allowed)", bad);
    return RB_EUSER;
  }
  RbBuf text = {0};
  rt_plan_format(p, &text);
  if (text.oom) {
    rb_buf_free(&text);
    return RB_EINTERNAL;
  }
  /* Temp file and rename: a failed write never leaves a truncated plan. */
  RbBuf why = {0};
  const void *part = text.data;
  int rc = rb_write_atomic(path, &part, &text.len, 1, &why);
  if (rc) rb_buf_printf(err, "cannot write plan '%s': %s", path, why.data ? why.data : "");
  rb_buf_free(&why);
  rb_buf_free(&text);
  return rc;
}

/* ---- parsing ---- */

typedef struct {
  const char *path;
  int line;
  RbBuf *err;
  int failed;
} Cursor;

static void perr(Cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void perr(Cursor *c, const char *fmt, ...) {
  if (c->failed++) return;
  va_list ap;
  va_start(ap, fmt);
  rb_buf_printf(c->err, "%s:%d: error: ", c->path, c->line);
  rb_buf_vprintf(c->err, fmt, ap);
  va_end(ap);
}

/* The value of key=... among the words of a line (NULL when absent). */
static const char *field(char **words, int n, const char *key, char *buf, size_t len) {
  size_t k = strlen(key);
  for (int i = 0; i < n; i++)
    if (strncmp(words[i], key, k) == 0 && words[i][k] == '=') {
      snprintf(buf, len, "%s", words[i] + k + 1);
      return buf;
    }
  return NULL;
}

static long get_int(Cursor *c, char **w, int n, const char *key, long lo, long hi) {
  char buf[64], *end;
  if (!field(w, n, key, buf, sizeof buf)) {
    perr(c, "missing field '%s'", key);
    return lo;
  }
  errno = 0;
  long v = strtol(buf, &end, 10);
  if (*end || errno || v < lo || v > hi) {
    perr(c, "field '%s' must be an integer in %ld..%ld, got '%s'", key, lo, hi, buf);
    return lo;
  }
  return v;
}

static double get_float(Cursor *c, char **w, int n, const char *key) {
  char buf[64], *end;
  if (!field(w, n, key, buf, sizeof buf)) {
    perr(c, "missing field '%s'", key);
    return 0;
  }
  double v = strtod(buf, &end);
  if (*end) perr(c, "field '%s' must be a number, got '%s'", key, buf);
  return v;
}

/* An integer list "1,2,3" or "-" into v (at most max). Returns the count. */
static int get_list(Cursor *c, char **w, int n, const char *key, int *v, int max, long lo, long hi) {
  char buf[256];
  if (!field(w, n, key, buf, sizeof buf)) {
    perr(c, "missing field '%s'", key);
    return 0;
  }
  if (strcmp(buf, "-") == 0) return 0;
  int count = 0;
  for (char *s = buf, *end;; s = end + 1) {
    long x = strtol(s, &end, 10);
    if (end == s || x < lo || x > hi || count == max || (*end && *end != ',')) {
      perr(c, "field '%s' must be a list of at most %d integers in %ld..%ld, got '%s'", key, max, lo, hi, buf);
      return 0;
    }
    v[count++] = (int)x;
    if (!*end) break;
  }
  return count;
}

static int get_name(Cursor *c, char **w, int n, const char *key, const char *const *names, int count) {
  char buf[32];
  if (!field(w, n, key, buf, sizeof buf)) {
    perr(c, "missing field '%s'", key);
    return 0;
  }
  for (int i = 0; i < count; i++)
    if (strcmp(buf, names[i]) == 0) return i;
  perr(c, "unknown %s '%s'", key, buf);
  return 0;
}

static int parse_key(const char *hex, RtKey *k) {
  if (strlen(hex) != 32) return 0;
  char a[17], b[17], *end;
  memcpy(a, hex, 16);
  memcpy(b, hex + 16, 16);
  a[16] = b[16] = 0;
  k->hi = strtoull(a, &end, 16);
  if (*end) return 0;
  k->lo = strtoull(b, &end, 16);
  return !*end;
}

/* An index into the plan's kernels, or "-" for a role that does not apply. */
static int get_role(Cursor *c, char **w, int n, const char *key, int nkernels) {
  char buf[32];
  if (!field(w, n, key, buf, sizeof buf)) {
    perr(c, "missing field '%s'", key);
    return -1;
  }
  if (strcmp(buf, "-") == 0) return -1;
  return (int)get_int(c, w, n, key, 0, nkernels - 1);
}

static void parse_kernel(Cursor *c, char **w, int n, RtPlanKernel *k) {
  char buf[128];
  /* The spellings are kinds.c's, so the format reads what it writes. */
  const char *kinds[CG_NKIND], *strategies[CG_NSTRATEGY], *epilogues[3], *sources[3];
  for (int i = 0; i < CG_NKIND; i++) kinds[i] = cg_kind_name((CgKind)i);
  for (int i = 0; i < CG_NSTRATEGY; i++) strategies[i] = cg_strategy_name((CgStrategy)i);
  for (int i = 0; i < 3; i++) {
    epilogues[i] = cg_epilogue_name((CgEpilogue)i);
    sources[i] = cg_schedule_source_name((CgScheduleSource)i);
  }
  if (!field(w, n, "key", buf, sizeof buf) || !parse_key(buf, &k->key)) perr(c, "bad or missing key");
  if (!field(w, n, "entry", k->entry, sizeof k->entry)) perr(c, "missing field 'entry'");
  k->from = (CgScheduleSource)get_name(c, w, n, "schedule", sources, 3);
  CgGeometry *g = &k->geometry;
  int grid[3] = {1, 1, 1}, block[3] = {1, 1, 1}, small[3] = {0, 0, 0};
  if (get_list(c, w, n, "grid", grid, 3, 1, 1 << 30) != 3) perr(c, "field 'grid' needs 3 sizes");
  if (get_list(c, w, n, "block", block, 3, 1, 1024) != 3) perr(c, "field 'block' needs 3 sizes");
  for (int i = 0; i < 3; i++) g->grid[i] = (unsigned)grid[i], g->block[i] = (unsigned)block[i];
  g->smem = (unsigned)get_int(c, w, n, "smem", 0, 1 << 20);
  g->grow_axis = (int)get_int(c, w, n, "grow", -1, 2);
  g->n_per_block = (unsigned)get_int(c, w, n, "per", 0, 1 << 20);
  if (get_list(c, w, n, "small", small, 3, 0, 1 << 30) != 3)
    perr(c, "field 'small' needs 3 values (rows, block, grid x of the decode variant)");
  g->n_small = (unsigned)small[0], g->block_x_small = (unsigned)small[1], g->grid_x_small = (unsigned)small[2];
  if (g->grow_axis >= 0 && !g->n_per_block) perr(c, "field 'per' must be positive when the grid grows");
  if (g->n_small && (!g->block_x_small || g->block_x_small > 1024)) perr(c, "field 'small' needs a block of 1..1024");
  CgOp *s = &k->kernel.op;
  CgSchedule *sc = &k->kernel.sched;
  memset(&k->kernel, 0, sizeof k->kernel);
  s->kind = (CgKind)get_name(c, w, n, "kind", kinds, CG_NKIND);
  sc->strategy = (CgStrategy)get_name(c, w, n, "strategy", strategies, CG_NSTRATEGY);
  s->epilogue = (CgEpilogue)get_name(c, w, n, "epilogue", epilogues, 3);
  sc->batch_max = (int)get_int(c, w, n, "batch", 0, 1 << 20);
  s->K = (int)get_int(c, w, n, "K", 0, 1 << 24);
  s->nseg = get_list(c, w, n, "N", s->N, CG_MAX_SEG, 0, 1 << 24);
  for (int i = 0; i < s->nseg && s->kind != CG_PLANES; i++) /* a planes kernel counts segments, not rows */
    if (s->N[i] < 1) perr(c, "field 'N' must be a list of at most %d integers in 1..%d, got %d", CG_MAX_SEG, 1 << 24, s->N[i]);
  s->paths = (int)get_int(c, w, n, "paths", 0, 4);
  if (get_list(c, w, n, "tile", sc->tile, CG_MAX_TILE, 0, 1 << 16) != CG_MAX_TILE)
    perr(c, "field 'tile' needs 4 values");
  s->dim = (int)get_int(c, w, n, "dim", 0, 1 << 24);
  s->vocab = (int)get_int(c, w, n, "vocab", 0, 1 << 24);
  s->heads = (int)get_int(c, w, n, "heads", 0, 1 << 16);
  s->kv_heads = (int)get_int(c, w, n, "kv_heads", 0, 1 << 16);
  s->head_dim = (int)get_int(c, w, n, "head_dim", 0, 1 << 16);
  s->max_ctx = (int)get_int(c, w, n, "max_ctx", 0, 1 << 24);
  s->eps = (float)get_float(c, w, n, "eps");
  s->rope_theta = (float)get_float(c, w, n, "rope_theta");
}

/* Each role names a kernel of the kind it needs, so the executor can trust the plan. */
static void check_roles(Cursor *c, const RtPlanStep *s, const RtPlan *p) {
  const CgNodeKernels *k = &s->kernels;
  if (k->rope >= 0 && p->kernels[k->rope].kernel.op.kind != CG_ROPE_KV) perr(c, "'rope' is not a rope_kv kernel");
  if (k->repack >= 0 && p->kernels[k->repack].kernel.op.kind != CG_REPACK) perr(c, "'repack' is not a repack kernel");
  for (int i = 0; i < k->nbucket; i++)
    if (p->kernels[k->bucket[i]].kernel.op.kind != CG_LINEAR) perr(c, "bucket %d is not a linear kernel", i);
  if (k->nll >= 0 && p->kernels[k->nll].kernel.op.kind != CG_NLL) perr(c, "'nll' is not an nll kernel");
  if (k->planes >= 0 && p->kernels[k->planes].kernel.op.kind != CG_PLANES) perr(c, "'planes' is not a planes kernel");
  for (int i = 0; i < k->nbucket && k->planes < 0; i++)
    if (p->kernels[k->bucket[i]].kernel.sched.strategy == CG_STRAT_BMMA) perr(c, "a bmma bucket needs 'planes'");
  if (s->paths && (k->nbucket < 1 || k->repack < 0)) perr(c, "a quantized linear needs buckets and a repack");
  if (k->main >= 0) {
    CgKind kind = p->kernels[k->main].kernel.op.kind;
    if (kind == CG_LINEAR || kind == CG_REPACK || kind == CG_ROPE_KV || kind == CG_PLANES)
      perr(c, "'main' is a %s kernel", cg_kind_name(kind));
  }
  if (s->op == IR_ATTENTION && (k->main < 0 || k->rope < 0)) perr(c, "attention needs 'main' and 'rope'");
}

static void parse_step(Cursor *c, char **w, int n, RtPlanStep *s, const RtPlan *p) {
  char buf[4096];
  if (!field(w, n, "op", buf, 32) || (s->op = ir_op_lookup(buf)) == IR_NOP) perr(c, "bad or missing op");
  s->line = (int)get_int(c, w, n, "line", 0, 1 << 30);
  s->layer = (int)get_int(c, w, n, "layer", -1, 1 << 30);
  s->paths = (int)get_int(c, w, n, "paths", 0, 4);
  s->kernels.main = get_role(c, w, n, "main", p->nkernels);
  s->kernels.rope = get_role(c, w, n, "rope", p->nkernels);
  s->kernels.repack = get_role(c, w, n, "repack", p->nkernels);
  s->kernels.nll = field(w, n, "nll", buf, 32) ? get_role(c, w, n, "nll", p->nkernels) : -1;
  s->kernels.planes = field(w, n, "planes", buf, 32) ? get_role(c, w, n, "planes", p->nkernels) : -1;
  s->kernels.nbucket = get_list(c, w, n, "buckets", s->kernels.bucket, CG_MAX_BUCKETS, 0, p->nkernels - 1);
  s->nin = get_list(c, w, n, "in", s->in, RT_PLAN_MAX_VALUES, 0, p->nvalues - 1);
  s->nout = get_list(c, w, n, "out", s->out, RT_PLAN_MAX_VALUES, 0, p->nvalues - 1);
  if (get_list(c, w, n, "width", s->width, RT_PLAN_MAX_VALUES, 1, 1 << 24) != s->nout)
    perr(c, "field 'width' needs one width per output");
  s->tied = (int)get_int(c, w, n, "tied", 0, 1);
  if (!field(w, n, "weights", buf, sizeof buf)) perr(c, "missing field 'weights'");
  else if (strcmp(buf, "-") != 0)
    for (char *t = strtok(buf, ","); t && !c->failed; t = strtok(NULL, ",")) {
      if (s->nweights == RT_PLAN_MAX_VALUES) perr(c, "too many weights");
      else if (!(s->weights[s->nweights++] = rb_strdup(t))) perr(c, "out of memory");
    }
  s->layout_bytes = (size_t)get_int(c, w, n, "layout", 0, (1L << 40));
  if (!c->failed) check_roles(c, s, p);
}

/* A header value, refused rather than truncated when it does not fit. */
static void header_value(Cursor *c, char *dst, size_t size, const char *val, const char *what) {
  size_t n = strlen(val);
  if (n >= size) {
    perr(c, "'%s' is longer than %zu characters", what, size - 1);
    return;
  }
  memcpy(dst, val, n + 1);
}

int rt_plan_parse(const char *path, const char *text, RtPlan **out, RbBuf *err) {
  Cursor c = {path, 0, err, 0};
  RtPlan *p = rb_calloc(1, sizeof *p);
  char *copy = rb_strdup(text);
  if (!p || !copy) {
    rb_free(p);
    rb_free(copy);
    return RB_EINTERNAL;
  }
  int nk = 0, ns = 0, header = 0, seen_magic = 0;
  char *save = NULL;
  for (char *line = strtok_r(copy, "\n", &save); line && !c.failed; line = strtok_r(NULL, "\n", &save)) {
    c.line++;
    char *words[64];
    int n = 0;
    char *rest = line, *ws = NULL;
    for (char *t = strtok_r(rest, " ", &ws); t && n < 64; t = strtok_r(NULL, " ", &ws)) words[n++] = t;
    if (!n) continue;
    const char *what = words[0];
    /* Header values are the rest of the line, re-joined. */
    char val[256] = "";
    for (int i = 1, used = 0; i < n && used < (int)sizeof val; i++)
      used += snprintf(val + used, sizeof val - (size_t)used, "%s%s", i > 1 ? " " : "", words[i]);
    if (!seen_magic) { /* the first line with words, whatever blank lines come before it */
      seen_magic = 1;
      if (strcmp(what, "rabit-plan") != 0) perr(&c, "not a rabit plan (no 'rabit-plan' header)");
      else if (atoi(val) != RT_PLAN_VERSION)
        perr(&c, "plan version %s is not supported (this runtime reads version %d)", val, RT_PLAN_VERSION);
      p->version = RT_PLAN_VERSION;
      continue;
    }
    if (strcmp(what, "model") == 0) header_value(&c, p->model, sizeof p->model, val, what);
    else if (strcmp(what, "target") == 0) header_value(&c, p->target, sizeof p->target, val, what);
    else if (strcmp(what, "arch") == 0) header_value(&c, p->arch, sizeof p->arch, val, what);
    else if (strcmp(what, "compiler") == 0) header_value(&c, p->compiler, sizeof p->compiler, val, what);
    else if (strcmp(what, "rabitc") == 0) header_value(&c, p->tool, sizeof p->tool, val, what);
    else if (strcmp(what, "ir-hash") == 0) {
      if (!parse_key(val, &p->ir_hash)) perr(&c, "bad ir-hash '%s'", val);
    } else if (strcmp(what, "counts") == 0) {
      if (header) {
        perr(&c, "'counts' appears twice");
        break;
      }
      p->nkernels = (int)get_int(&c, words, n, "kernels", 0, 1 << 20);
      p->nsteps = (int)get_int(&c, words, n, "steps", 0, 1 << 22);
      p->nvalues = (int)get_int(&c, words, n, "values", 0, 1 << 24);
      p->kernels = rb_calloc((size_t)p->nkernels + 1, sizeof *p->kernels);
      p->steps = rb_calloc((size_t)p->nsteps + 1, sizeof *p->steps);
      if (!p->kernels || !p->steps) perr(&c, "out of memory");
      header = 1;
    } else if (strcmp(what, "return") == 0) {
      static const char *const rdt[] = {"f16", "f32"};
      if (!header) perr(&c, "'return' before 'counts'");
      p->ret = (int)get_int(&c, words, n, "value", 0, p->nvalues > 0 ? p->nvalues - 1 : 0);
      p->ret_f32 = get_name(&c, words, n, "dtype", rdt, 2);
    } else if (strcmp(what, "kernel") == 0 || strcmp(what, "step") == 0) {
      int is_k = what[0] == 'k';
      if (!header) {
        perr(&c, "'%s' before 'counts'", what);
        break;
      }
      if (n < 2 || atoi(words[1]) != (is_k ? nk : ns) || (is_k ? nk == p->nkernels : ns == p->nsteps)) {
        perr(&c, "%s %s out of order or beyond its count", what, n > 1 ? words[1] : "?");
        break;
      }
      if (is_k) parse_kernel(&c, words + 2, n - 2, &p->kernels[nk++]);
      else parse_step(&c, words + 2, n - 2, &p->steps[ns++], p);
    } else perr(&c, "unknown record '%s'", what);
  }
  if (!c.failed && (!header || nk != p->nkernels || ns != p->nsteps)) {
    c.line++;
    perr(&c, "the plan is truncated: %d of %d kernels and %d of %d steps", nk, p->nkernels, ns, p->nsteps);
  }
  if (!c.failed && (!p->arch[0] || !p->compiler[0] || !p->target[0]))
    perr(&c, "the header lacks 'target', 'arch' or 'compiler'");
  if (!c.failed && !rt_plan_target(p)) perr(&c, "unknown target '%s'", p->target);
  for (int i = 0; !c.failed && i < p->nsteps; i++) { /* a fused rmsnorm names its norm's step */
    RbBuf why = {0};
    int norm;
    if (rt_linear_norm_step(p, i, &norm, &why)) perr(&c, "%s", why.data ? why.data : "out of memory");
    rb_buf_free(&why);
  }
  rb_free(copy);
  if (c.failed) {
    p->nsteps = ns; /* free only what was filled */
    rt_plan_free(p);
    return RB_EUSER;
  }
  *out = p;
  return RB_OK;
}

int rt_plan_load(const char *path, RtPlan **out, RbBuf *err) {
  RbBuf text = {0};
  if (rb_read_file_max(path, RT_PLAN_MAX_BYTES, &text) != 0) {
    char cap[32];
    if (errno == EFBIG)
      rb_buf_printf(err, "cannot read plan '%s': it is over %s, the cap on a plan", path, rb_size_str(RT_PLAN_MAX_BYTES, cap));
    else rb_buf_printf(err, "cannot read plan '%s': %s", path, strerror(errno));
    rb_buf_free(&text);
    return RB_EUSER;
  }
  int rc = text.len && memchr(text.data, 0, text.len) ? RB_EUSER : RB_OK;
  if (rc) rb_buf_printf(err, "%s: error: not a text file", path);
  else rc = rt_plan_parse(path, text.data, out, err);
  rb_buf_free(&text);
  return rc;
}
