/* test_limits.c: the index limits of codegen.h on the trainer's side, which
 * rabitc does not reach: the training graph's check (cg_graph_check, what
 * tr_step_open runs) and the grad pass's f32 scale; and the boundaries,
 * where the largest size that fits is accepted and the next one refused. */
#include <stdlib.h>
#include <string.h>

#include "../common/check.h"
#include "runtime/runtime.h"

static char *slurp(const char *path) {
  RbBuf b = {0};
  if (rb_read_file(path, &b)) return NULL;
  return b.data;
}

/* tiny.ir with the first `from` replaced by `to`. */
static char *edit(const char *src, const char *from, const char *to) {
  const char *at = strstr(src, from);
  if (!at) return NULL;
  size_t n = strlen(src) - strlen(from) + strlen(to) + 1;
  char *s = malloc(n);
  if (!s) return NULL;
  snprintf(s, n, "%.*s%s%s", (int)(at - src), src, to, at + strlen(from));
  return s;
}

/* Compile text as `name` to the stage, then run cg_graph_check on the graph
 * it made; the diagnostics of both into *diag (caller frees). Returns the first failure's status. */
static int check_text(const char *name, const char *text, int train, double gamma, RtStage stop, char **diag) {
  RtCompileOptions o = {.path = name, .text = text, .stop = stop, .train = train, .gamma = gamma};
  RtCompiled c;
  RbBuf err = {0};
  int rc = rt_compile(&o, &c, &err);
  IrDiag d;
  ir_diag_init(&d, c.shown, c.text.data);
  if (!rc) rc = cg_graph_check(c.graph, &d);
  RbBuf all = {0};
  if (c.diag.data) rb_buf_puts(&all, c.diag.data);
  if (d.out.data) rb_buf_puts(&all, d.out.data);
  if (err.data) rb_buf_puts(&all, err.data);
  *diag = all.data ? all.data : strdup("");
  ir_diag_free(&d);
  rb_buf_free(&err);
  rt_compiled_free(&c);
  return rc;
}

static void expect(const char *what, const char *text, int train, double gamma, RtStage stop, int want_rc,
                   const char *want) {
  char *got = NULL;
  int rc = text ? check_text("t.ir", text, train, gamma, stop, &got) : -1;
  CHECK(rc == want_rc, "%s: status %d, want %d; diagnostics:\n%s", what, rc, want_rc, got ? got : "");
  if (want) CHECK(got && strcmp(got, want) == 0, "%s: diagnostics\n%s\nwant\n%s", what, got ? got : "", want);
  free(got);
}

int main(int argc, char **argv) {
  const char *samples = argc > 1 ? argv[1] : "samples";
  char path[4096];
  snprintf(path, sizeof path, "%s/tiny.ir", samples);
  char *tiny = slurp(path);
  CHECK(tiny != NULL, "cannot read %s", path);
  if (!tiny) return CHECK_SUMMARY();

  /* The training graph: the forward's gate/up is over the limit, and so is its
   * linear_grad (same line: reported once). */
  char *big = edit(tiny, "F = 160,", "F = 33554433,");
  expect("training graph N * K", big, 1, 0, RT_STAGE_GRAD, RB_EUSER,
         "t.ir:23:12: error: 'linear' weight 'model.layers.0.mlp.gate_proj' N * K = 33554433 * 64 = 2147483712 "
         "elements, more than the kernels' index limit 2147483647\n"
         "    g, u = linear(h, F, F)                        @weights(\"model.layers.{l}.mlp.gate_proj\",\n"
         "           ^\n"
         "t.ir:25:16: error: 'linear' weight 'model.layers.0.mlp.down_proj' N * K = 64 * 33554433 = 2147483712 "
         "elements, more than the kernels' index limit 2147483647\n"
         "    x = add(x, linear(swiglu(g, u), D, quant = rabit(paths = 1))\n"
         "               ^\n");
  free(big);
  /* One below: N * K = 2^31 - 64 fits, in training and inference alike. */
  big = edit(tiny, "F = 160,", "F = 33554431,");
  expect("training graph at the limit", big, 1, 0, RT_STAGE_GRAD, RB_OK, "");
  expect("fused graph at the limit", big, 0, 0, RT_STAGE_FUSE, RB_OK, "");
  free(big);
  /* The grad pass writes hidden_mse's scale = gamma / L: 1e-300 / 2 is 0 as an f32. */
  expect("grad scale", tiny, 1, 1e-300, RT_STAGE_GRAD, RB_EUSER, NULL);
  {
    char *got = NULL;
    check_text("t.ir", tiny, 1, 1e-300, RT_STAGE_GRAD, &got);
    CHECK(got && strstr(got, "error: 'hidden_mse' scale = 5e-301 rounds to 0 in f32 (the smallest f32 is "
                             "1.40129846e-45)\n"),
          "grad scale: diagnostics\n%s", got ? got : "");
    free(got);
  }
  expect("grad scale 1e-30", tiny, 1, 1e-30, RT_STAGE_GRAD, RB_OK, "");

  /* A dimension of exactly IR_DIM_MAX is the IR's; one more is not. */
  expect("dim at the limit",
         "rabit 1\ngraph f(x: f16[T, 2147483647]) -> f16[T, 1] {\n  y = linear(x, 1) @weights(\"w\")\n  return y\n}\n",
         0, 0, RT_STAGE_FUSE, RB_OK, "");
  expect("dim over the limit",
         "rabit 1\ngraph f(x: f16[T, 2147483648]) -> f16[T, 1] {\n  y = linear(x, 1) @weights(\"w\")\n  return y\n}\n",
         0, 0, RT_STAGE_FUSE, RB_EUSER,
         "t.ir:3:7: error: 'linear' input 'x' has dimension 2147483648, outside 1..2147483647\n"
         "  y = linear(x, 1) @weights(\"w\")\n"
         "      ^\n");

  /* The real shapes pass, trained and fused. */
  const char *real[] = {"smollm2-135m.ir", "llama2-7b.ir"};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", samples, real[i]);
    char *src = slurp(path);
    CHECK(src != NULL, "cannot read %s", path);
    expect(real[i], src, 1, 0.5, RT_STAGE_GRAD, RB_OK, "");
    expect(real[i], src, 0, 0, RT_STAGE_FUSE, RB_OK, "");
    rb_free(src);
  }
  rb_free(tiny);
  return CHECK_SUMMARY();
}
