/* test_weights.c: the tensors a plan binds, and a weight file checked against
 * them on the CPU. samples/tiny.ir gives v_proj k = 3 and down_proj k = 1: the
 * expected shapes below are written out by hand from the packed format, not
 * asked of packed.c; each damaged file must be refused with a message naming
 * the tensor. usage: test_weights SAMPLES_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/formats/formats.h"
#include "runtime/runtime.h"
#include "tests/common/check.h"

static const char *dir;

/* The plan of tiny.ir for sm_90, with made-up keys: nothing is compiled. */
static RtPlan *tiny_plan(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tiny.ir", dir);
  RtCompileOptions co = {.path = path, .stop = RT_STAGE_SELECT};
  RtCompiled c;
  RbBuf err = {0};
  RtPlan *p = NULL;
  if (rt_compile(&co, &c, &err) == RB_OK) {
    RtBuilt *built = rb_calloc((size_t)c.kernels.n, sizeof *built);
    for (int i = 0; i < c.kernels.n; i++) snprintf(built[i].entry, sizeof built[i].entry, "k%d", i);
    rt_plan_make(&p, c.graph, c.text.data, &cg_target_cuda, "sm_90", &c.kernels, built, &err);
    rb_free(built);
  }
  CHECK(p, "tiny.ir has no plan: %s%s", c.diag.data ? c.diag.data : "", err.data ? err.data : "");
  rt_compiled_free(&c);
  rb_buf_free(&err);
  return p;
}

typedef struct {
  RtStWriter *w;
  const char *drop;   /* leave this tensor out */
  const char *swap;   /* write this one with the shape below instead */
  int swap_rank;
  int64_t swap_shape[3];
  RtDtype swap_dtype;
  int n, seen_v_bits, seen_down_bits;
  int64_t v_bits[3], down_bits[3];
} Writer;

/* Write each tensor the plan binds (zeros of the right size), with one change. */
static int add_tensor(void *ctx, const RtPlanTensor *t) {
  Writer *w = ctx;
  w->n++;
  if (!strcmp(t->name, "model.layers.0.self_attn.v_proj.bits")) w->seen_v_bits = 1, memcpy(w->v_bits, t->shape, sizeof w->v_bits);
  if (!strcmp(t->name, "model.layers.1.mlp.down_proj.bits")) w->seen_down_bits = 1, memcpy(w->down_bits, t->shape, sizeof w->down_bits);
  if (w->drop && !strcmp(t->name, w->drop)) return 0;
  int rank = t->rank;
  const int64_t *shape = t->shape;
  RtDtype dt = t->packed ? (t->part == CG_PACKED_BITS ? RT_I32 : RT_F16) : RT_F32;
  const char *name = t->name;
  if (w->swap && !strcmp(t->name, w->swap)) rank = w->swap_rank, shape = w->swap_shape, dt = w->swap_dtype;
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)shape[i];
  void *zeros = calloc(n, 4);
  int rc = rt_st_writer_add(w->w, name, dt, rank, shape, zeros);
  free(zeros);
  return rc;
}

/* A weight file for tiny.ir's plan with one change; returns rt_weights_check's rc and message. */
static int check_file(const RtPlan *p, Writer *wr, const char *extra, RbBuf *msg) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/rabit_test_weights_%d.safetensors", (int)getpid());
  rt_st_writer_new(&wr->w);
  rt_plan_tensors(p, add_tensor, wr);
  if (extra) { /* a dense .weight beside (or instead of) the packed tensors */
    int64_t s[2] = {64, 64};
    float *z = calloc(64 * 64, 4);
    rt_st_writer_add(wr->w, extra, RT_F32, 2, s, z);
    free(z);
  }
  RbBuf err = {0};
  int rc = rt_st_writer_finish(wr->w, path, &err);
  CHECK(rc == RB_OK, "cannot write the test file: %s", err.data);
  RtSafetensors *st = NULL;
  if (!rc) rc = rt_st_open(path, &st, &err);
  if (!rc) rc = rt_weights_check(p, st, path, msg);
  rt_st_close(st);
  unlink(path);
  rb_buf_free(&err);
  return rc;
}

static void expect_refused(const RtPlan *p, Writer w, const char *extra, const char *what, const char *want) {
  RbBuf msg = {0};
  int rc = check_file(p, &w, extra, &msg);
  CHECK(rc == RB_EUSER, "%s: a damaged file was accepted", what);
  CHECK(msg.data && strstr(msg.data, want), "%s: expected '%s' in '%s'", what, want, msg.data ? msg.data : "");
  printf("%s: %s\n", what, msg.data ? msg.data : "");
  rb_buf_free(&msg);
}

int main(int argc, char **argv) {
  dir = argc > 1 ? argv[1] : "samples";
  RtPlan *p = tiny_plan();
  if (!p) return CHECK_SUMMARY();

  Writer ok = {0};
  RbBuf msg = {0};
  CHECK(check_file(p, &ok, NULL, &msg) == RB_OK, "the plan's own tensors refused: %s", msg.data);
  rb_buf_free(&msg);
  /* 2 layers x (2 norms, q/k/v/o/gate/up/down x 3 parts) + embedding + final norm; lm_head is tied. */
  CHECK(ok.n == 2 * (2 + 7 * 3) + 2, "the plan binds %d tensors, want 48", ok.n);
  /* v_proj: k = 3, N = 32, K = 64 -> 2 words; down_proj: k = 1, N = 64, K = 160 -> 5 words. */
  CHECK(ok.seen_v_bits && ok.v_bits[0] == 3 && ok.v_bits[1] == 32 && ok.v_bits[2] == 2,
        "v_proj.bits is [%lld, %lld, %lld], want [3, 32, 2]", (long long)ok.v_bits[0], (long long)ok.v_bits[1],
        (long long)ok.v_bits[2]);
  CHECK(ok.seen_down_bits && ok.down_bits[0] == 1 && ok.down_bits[1] == 64 && ok.down_bits[2] == 5,
        "down_proj.bits is [%lld, %lld, %lld], want [1, 64, 5]", (long long)ok.down_bits[0],
        (long long)ok.down_bits[1], (long long)ok.down_bits[2]);

  Writer w = {0};
  w.swap = "model.layers.0.self_attn.v_proj.bits", w.swap_rank = 3, w.swap_dtype = RT_I32;
  w.swap_shape[0] = 2, w.swap_shape[1] = 32, w.swap_shape[2] = 2;
  expect_refused(p, w, NULL, "wrong k", "'model.layers.0.self_attn.v_proj.bits' has k = 2 residual paths, the IR (line 19) gives it k = 3");

  memset(&w, 0, sizeof w);
  w.drop = "model.layers.1.mlp.down_proj.h";
  expect_refused(p, w, NULL, "missing", "no tensor 'model.layers.1.mlp.down_proj.h' (IR line 25)");

  memset(&w, 0, sizeof w);
  w.drop = "model.layers.0.self_attn.o_proj.bits";
  expect_refused(p, w, "model.layers.0.self_attn.o_proj.weight", "not quantized",
                 "'model.layers.0.self_attn.o_proj' is not quantized");

  memset(&w, 0, sizeof w);
  w.swap = "model.layers.0.mlp.gate_proj.g", w.swap_rank = 2, w.swap_dtype = RT_F32;
  w.swap_shape[0] = 2, w.swap_shape[1] = 160;
  expect_refused(p, w, NULL, "scale dtype", "'model.layers.0.mlp.gate_proj.g' must be F16 [2, 160]");

  memset(&w, 0, sizeof w);
  w.swap = "model.embed_tokens.weight", w.swap_rank = 2, w.swap_dtype = RT_F32;
  w.swap_shape[0] = 255, w.swap_shape[1] = 64;
  expect_refused(p, w, NULL, "embedding shape", "'model.embed_tokens.weight' has shape [255, 64], the model needs [256, 64]");

  memset(&w, 0, sizeof w);
  w.swap = "model.norm.weight", w.swap_rank = 1, w.swap_dtype = RT_I32;
  w.swap_shape[0] = 64;
  expect_refused(p, w, NULL, "norm dtype", "'model.norm.weight' is I32; the model needs F16, BF16 or F32");

  rt_plan_free(p);
  return CHECK_SUMMARY();
}
