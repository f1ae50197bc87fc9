/* cmd_bench.c: rabit bench: prefill and decode speed of a model, 2-bit and
 * fp16 side by side. Decode is timed as the peers time it: the step is one
 * CUDA graph, replayed back to back at a fixed context, host clock around
 * many replays (on the host target the step itself, run again). Random
 * weights need no files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/args.h"
#include "tools/commands.h"
#include "tools/load.h"
#include "tools/paths.h"

/* --ctx: up to 8 decode contexts (args.h). */
typedef struct {
  int v[8], n;
} Contexts;

static const char *parse_ctx(const char *v, void *dest) {
  Contexts *c = dest;
  int n = args_ints(v, 1, 1 << 20, c->v, ARGS_COUNT(c->v));
  if (n < 1) return "a comma-separated list of 1 to 8 contexts 1..1048576";
  c->n = n;
  return NULL;
}

/* --only: one side, 2bit or fp16. */
static const char *parse_only(const char *v, void *dest) {
  static const char *const sides[] = {"2bit", "fp16"};
  if (args_pick(v, sides, ARGS_COUNT(sides)) < 0) return "2bit or fp16";
  *(const char **)dest = v;
  return NULL;
}

typedef struct {
  double prefill_tps, decode_ms[8];
  size_t bytes;
} Result;

static int bench_one(LoadOptions *o, const int *ctxs, int nctx, int prefill, int steps, Result *r) {
  Loaded L;
  int rc = load_model(o, &L);
  if (rc) return rc;
  r->bytes = rt_model_total_bytes(L.model);
  int V = rt_model_vocab(L.model);
  int32_t *tok = malloc((size_t)prefill * sizeof *tok);
  if (!tok) {
    fprintf(stderr, "%s: out of memory\n", o->tool);
    load_free(&L);
    return 2;
  }
  for (int i = 0; i < prefill; i++) tok[i] = (int32_t)((i * 7919u) % (unsigned)V);
  /* Prefill: one warm-up, then the best of 5. */
  double best = 1e30;
  for (int rep = 0; !rc && rep < 6; rep++) {
    double t0 = rb_now_ms();
    rc = rt_model_forward(L.model, tok, prefill, 0) || rt_model_sync(L.model);
    double t = rb_now_ms() - t0;
    if (rep && t < best) best = t;
  }
  r->prefill_tps = prefill / (best / 1e3);
  for (int c = 0; !rc && c < nctx; c++) {
    /* Fill the cache up to the context, then time decode steps there. */
    for (int at = 0; !rc && at < ctxs[c]; at += prefill) {
      int T = ctxs[c] - at < prefill ? ctxs[c] - at : prefill;
      rc = rt_model_forward(L.model, tok, T, at);
    }
    if (!rc) rc = rt_model_decode(L.model, tok[0], ctxs[c]) || rt_model_decode_replay(L.model, 5) || rt_model_sync(L.model);
    double t0 = rb_now_ms();
    if (!rc) rc = rt_model_decode_replay(L.model, steps) || rt_model_sync(L.model);
    r->decode_ms[c] = (rb_now_ms() - t0) / steps;
  }
  if (rc) fprintf(stderr, "%s: %s\n", o->tool, rt_model_error(L.model));
  free(tok);
  load_free(&L);
  return rc ? 2 : 0;
}

int cmd_bench(int argc, char **argv) {
  LoadOptions o = {0};
  o.tool = "rabit bench";
  const char *w16 = NULL, *only = NULL;
  Contexts ctx = {{128, 1024}, 2};
  int prefill = 512, steps = 200;
  const ArgsOpt opts[] = {
      ARGS_OPT_FLAG(NULL, "--random-weights", &o.random, NULL),
      ARGS_OPT_STRING(NULL, "--weights", &o.weights, "W", NULL),
      ARGS_OPT_STRING(NULL, "--fp16-weights", &w16, "W16", NULL),
      ARGS_OPT_CUSTOM(NULL, "--ctx", parse_ctx, &ctx, "LIST", "decode contexts (default 128,1024)"),
      ARGS_OPT_INT(NULL, "--prefill", &prefill, "N", 1, 1 << 20, "prefill length (default 512)"),
      ARGS_OPT_INT(NULL, "--steps", &steps, "N", 1, 1000000, "decode steps timed per context (default 200)"),
      ARGS_OPT_CUSTOM(NULL, "--only", parse_only, &only, "2bit|fp16", "run one side only"),
      ARGS_OPT_CUSTOM(NULL, "--target", load_parse_target, &o.target, "T", LOAD_TARGET_HELP),
      ARGS_OPT_INT(NULL, "--threads", &o.threads, "N", 1, 1024, "the host target's threads (default: the online CPUs)"),
      ARGS_OPT_HELP("-h", "--help", NULL),
  };
  const ArgsSpec spec = {"rabit bench",
                         "usage: rabit bench MODEL.ir [--random-weights | --weights W [--fp16-weights W16]] "
                         "[options]\n\n",
                         NULL, 19, opts, ARGS_COUNT(opts), 1, "one model"};
  int rc = args_parse(&spec, argc, argv, &o.ir, NULL);
  if (rc != ARGS_GO) return rc;
  if (!o.ir) return args_missing(&spec, "a model IR (MODEL.ir)");
  if (!o.random && !o.weights) return args_missing(&spec, "--weights W (or --random-weights)");
  if (w16 && o.random) {
    fprintf(stderr, "rabit bench: --fp16-weights needs --weights (not --random-weights)\n");
    return 1;
  }
  if (w16 && only && !strcmp(only, "2bit")) {
    fprintf(stderr, "rabit bench: --fp16-weights is not read with --only 2bit\n");
    return 1;
  }
  if (load_check(&o)) return 1;
  if (w16 && paths_input("rabit bench", "weights", w16)) return 1;
  const int *ctxs = ctx.v;
  int nctx = ctx.n;
  int maxc = prefill;
  for (int c = 0; c < nctx; c++)
    if (ctxs[c] + 1 > maxc) maxc = ctxs[c] + 1;
  o.max_ctx = maxc < 2048 ? 2048 : maxc;
  o.max_tokens = prefill;
  Result q = {0}, h = {0};
  int run_q = !only || !strcmp(only, "2bit"), run_h = !only || !strcmp(only, "fp16");
  rc = 0;
  if (run_q) rc = bench_one(&o, ctxs, nctx, prefill, steps, &q);
  if (!rc && run_h) {
    LoadOptions f = o;
    f.fp16 = 1;
    if (w16) f.weights = w16;
    rc = bench_one(&f, ctxs, nctx, prefill, steps, &h);
  }
  if (rc) return rc;
  if (!run_q || !run_h) { /* one side: its numbers alone, no speed-up against a side not measured */
    const Result *r = run_q ? &q : &h;
    printf("%-24s %14s\n", o.ir, run_q ? "2-bit" : "fp16");
    printf("%-24s %12.0f/s\n", "prefill tokens", r->prefill_tps);
    for (int c = 0; c < nctx; c++)
      printf("decode ctx %-13d %9.3f ms   (%.0f tok/s)\n", ctxs[c], r->decode_ms[c],
             r->decode_ms[c] ? 1e3 / r->decode_ms[c] : 0);
    printf("%-24s %11.1f MB\n", "memory", r->bytes / 1e6);
    return 0;
  }
  printf("%-24s %14s %14s %8s\n", o.ir, "2-bit", "fp16", "speed-up");
  printf("%-24s %12.0f/s %12.0f/s %7.2fx\n", "prefill tokens", q.prefill_tps, h.prefill_tps,
         h.prefill_tps ? q.prefill_tps / h.prefill_tps : 0);
  for (int c = 0; c < nctx; c++)
    printf("decode ctx %-13d %9.3f ms %9.3f ms %7.2fx   (%.0f vs %.0f tok/s)\n", ctxs[c], q.decode_ms[c],
           h.decode_ms[c], q.decode_ms[c] ? h.decode_ms[c] / q.decode_ms[c] : 0,
           q.decode_ms[c] ? 1e3 / q.decode_ms[c] : 0, h.decode_ms[c] ? 1e3 / h.decode_ms[c] : 0);
  printf("%-24s %11.1f MB %11.1f MB\n", "memory", q.bytes / 1e6, h.bytes / 1e6);
  return 0;
}
