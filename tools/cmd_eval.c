/* cmd_eval.c: rabit eval: DESIGN.md's held-out split. The held-out text's
 * shard is one stream of windows of 1024 (the KJV part's shard says where
 * Austen begins); even windows are validation, odd ones test; it prints
 * validation and test perplexity, and test perplexity for KJV and Austen
 * windows apart (trainer/eval.c). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tools/args.h"
#include "tools/commands.h"
#include "tools/load.h"
#include "trainer/trainer.h"

static const char help_head[] =
    "usage: rabit eval MODEL.ir --weights W --data DIR [options]\n"
    "\n"
    "Perplexity on the held-out split: DIR holds heldout.shard and heldout-kjv.shard, made by\n"
    "  rabit data prepare --split heldout --tokenizer T --text data/heldout.txt \\\n"
    "      --text data/heldout-kjv.txt -o DIR\n"
    "(tools/fetch_data.sh writes both texts). heldout.txt tokenized whole is the stream, cut into\n"
    "windows of 1024 tokens, the KV cache empty at each (the first 40 are rabit ppl's); even windows\n"
    "(0, 2, ...) are the validation set, odd windows the test set. The KJV part's shard says where\n"
    "Austen begins: each window is KJV, Austen, or mixed (it spans the boundary; counted in the\n"
    "overall numbers only).\n"
    "\n";
static const char help_tail[] =
    "\n"
    "Exit status: 0 ok, 1 bad input, usage or no GPU, 2 internal error.\n";

typedef struct {
  int quiet;
} Progress;

static void progress(void *ctx, int done, int total, const TrEvalResult *r) {
  const Progress *p = ctx;
  if (p->quiet) return;
  int bar = (int)(30L * done / total);
  fprintf(stderr, "\r  [%.*s%*s] window %d/%d  %.0f tok/s", bar, "##############################", 30 - bar, "", done,
          total, r->forwarded / (r->seconds > 0 ? r->seconds : 1e-9));
  if (done == total) fprintf(stderr, "\n");
}

/* A perplexity for JSON: null when the set is empty. */
static void json_sum(const char *key, TrEvalSum s, int last) {
  if (s.tokens)
    printf("  \"%s\": {\"ppl\": %.6f, \"nll\": %.9f, \"tokens\": %llu, \"windows\": %d}%s\n", key, tr_eval_ppl(s),
           s.nll / (double)s.tokens, (unsigned long long)s.tokens, s.windows, last ? "" : ",");
  else printf("  \"%s\": null%s\n", key, last ? "" : ",");
}

static void text_sum(const char *what, TrEvalSum s) {
  if (s.tokens)
    printf("%-24s %10.4f over %llu tokens (%d windows)\n", what, tr_eval_ppl(s), (unsigned long long)s.tokens,
           s.windows);
  else printf("%-24s %10s (no windows)\n", what, "-");
}

/* Contract (commands.h). */
int cmd_eval(int argc, char **argv) {
  LoadOptions o = {0};
  o.tool = "rabit eval";
  const char *dir = NULL, *check_text = NULL, *tok_path = NULL;
  int max_windows = 0, json = 0, quiet = 0;
  const ArgsOpt opts[] = {
      ARGS_OPT_STRING(NULL, "--weights", &o.weights, "W", "the model's weights (safetensors)"),
      ARGS_OPT_STRING(NULL, "--data", &dir, "DIR", "the held-out shards (rabit data prepare --split heldout)"),
      ARGS_OPT_FLAG(NULL, "--fp16", &o.fp16, "every linear in fp16 with cuBLAS (the unquantized baseline)"),
      ARGS_OPT_INT(NULL, "--windows", &max_windows, "N", 0, 1000000,
                   "only the first N windows of the stream (default: all)"),
      ARGS_OPT_INT(NULL, "--paths", &o.paths, "K", 1, 4, "residual paths for linears without their own quant"),
      ARGS_OPT_FLAG(NULL, "--random-weights", &o.random, "random weights of the model's shapes (no --weights)"),
      ARGS_OPT_STRING(NULL, "--check-text", &check_text, "FILE",
                      "check that the stream equals FILE (data/heldout.txt) tokenized now"),
      ARGS_OPT_STRING(NULL, "--tokenizer", &tok_path, "FILE",
                      "for --check-text: the .gguf or tokenizer.txt (default: beside the weights)"),
      ARGS_OPT_FLAG(NULL, "--json", &json, "one JSON object on stdout: the sums and every window's NLL"),
      ARGS_OPT_FLAG(NULL, "--quiet", &quiet, "no progress bar"),
      ARGS_OPT_CUSTOM(NULL, "--target", load_parse_target, &o.target, "T", LOAD_TARGET_HELP),
      ARGS_OPT_INT(NULL, "--threads", &o.threads, "N", 1, 1024, "the host target's threads (default: the online CPUs)"),
      ARGS_OPT_HELP("-h", "--help", "this text"),
  };
  const ArgsSpec spec = {"rabit eval", help_head, help_tail, 20, opts, ARGS_COUNT(opts), 1, "one model"};
  int rc = args_parse(&spec, argc, argv, &o.ir, NULL);
  if (rc != ARGS_GO) return rc;
  if (!o.ir) return args_missing(&spec, "a model IR (MODEL.ir)");
  if (!o.weights && !o.random) return args_missing(&spec, "--weights W (or --random-weights)");
  if (!dir) return args_missing(&spec, "--data DIR");
  if (load_check(&o)) return 1;

  /* The data first: a wrong directory should not wait for a GPU, or need one. */
  RbBuf err = {0};
  TrEvalData d;
  rc = tr_eval_open(dir, TR_EVAL_WINDOW, max_windows, &d, &err);
  if (rc) {
    args_report("rabit eval", err.data ? err.data : "cannot read the held-out shards");
    rb_buf_free(&err);
    tr_eval_free(&d);
    return rc == RB_EUSER ? 1 : 2;
  }
  if (check_text) {
    RbBuf text = {0};
    RtTokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    RbBuf why = {0};
    if (tr_text_read(check_text, &text, &why)) fprintf(stderr, "rabit eval: %s\n", why.data ? why.data : check_text), rc = 1;
    else if (!(tok = load_tokenizer(tok_path, o.weights, "rabit eval"))) rc = 1;
    else if (rt_tok_encode(tok, text.data ? text.data : "", text.len, &ids, &n))
      fprintf(stderr, "rabit eval: cannot tokenize '%s'\n", check_text), rc = 2;
    int64_t at = rc ? 0 : tr_eval_compare(&d, ids, n);
    if (!rc && at >= 0) {
      fprintf(stderr, "rabit eval: %s/%s differs from '%s' tokenized now, at token %lld: another text or "
                      "tokenizer\n", dir, TR_EVAL_SHARD, check_text, (long long)at);
      rc = 1;
    } else if (!rc && !json)
      printf("check: the evaluated %llu tokens equal '%s' tokenized now\n",
             (unsigned long long)d.nwindows * d.window, check_text);
    rb_free(ids);
    rt_tok_free(tok);
    rb_buf_free(&text);
    rb_buf_free(&why);
    if (rc) {
      tr_eval_free(&d);
      return rc;
    }
  }

  o.max_ctx = d.window;
  o.max_tokens = d.window; /* one forward a window: 1.2x to 1.5x faster than chunks of 512 (RESULTS.md) */
  Loaded L;
  rc = load_model(&o, &L);
  if (rc) {
    tr_eval_free(&d);
    return rc;
  }
  Progress pg = {quiet};
  TrEvalRunOptions ro = {0, progress, &pg};
  TrEvalResult r;
  rc = tr_eval_run(L.model, &d, &ro, &r, &err);
  if (rc) args_report("rabit eval", err.data ? err.data : "evaluation failed");
  else if (json) {
    printf("{\n  \"data\": \"%s\", \"model\": \"%s\", \"linears\": \"%s\",\n", dir, o.ir, o.fp16 ? "fp16" : "quantized");
    printf("  \"tokens\": %llu, \"boundary\": %llu, \"kjv_tokens\": %llu, \"window\": %d, \"windows\": %d,\n",
           (unsigned long long)d.ntokens, (unsigned long long)d.boundary, (unsigned long long)d.kjv_tokens, d.window,
           d.nwindows);
    json_sum("validation", tr_eval_sum(&r, TR_EVAL_VALID, -1), 0);
    json_sum("test", tr_eval_sum(&r, TR_EVAL_TEST, -1), 0);
    json_sum("test_kjv", tr_eval_sum(&r, TR_EVAL_TEST, TR_EVAL_KJV), 0);
    json_sum("test_austen", tr_eval_sum(&r, TR_EVAL_TEST, TR_EVAL_AUSTEN), 0);
    printf("  \"tokens_per_s\": %.1f,\n  \"per_window\": [", r.forwarded / (r.seconds > 0 ? r.seconds : 1e-9));
    for (int i = 0; i < d.nwindows; i++)
      printf("%s\n    {\"index\": %d, \"set\": \"%s\", \"source\": \"%s\", \"nll\": %.9f}", i ? "," : "",
             d.w[i].index, tr_eval_set_name(d.w[i].set), tr_eval_source_name(d.w[i].source), r.window_nll[i]);
    printf("\n  ]\n}\n");
  } else {
    int per[TR_EVAL_NSET][TR_EVAL_NSOURCE] = {{0}};
    for (int i = 0; i < d.nwindows; i++) per[d.w[i].set][d.w[i].source]++;
    printf("held-out split of %s: %llu tokens (KJV %llu, Austen %llu), %d windows of %d\n", dir,
           (unsigned long long)d.ntokens, (unsigned long long)d.boundary,
           (unsigned long long)(d.ntokens - d.boundary), d.nwindows, d.window);
    if (d.boundary < d.kjv_tokens)
      printf("  (the KJV part alone is %llu tokens: the seam's pre-token spans both parts and counts as Austen)\n",
             (unsigned long long)d.kjv_tokens);
    for (int s = 0; s < TR_EVAL_NSET; s++)
      printf("  %-10s %d KJV, %d Austen, %d mixed\n", tr_eval_set_name((TrEvalSet)s), per[s][TR_EVAL_KJV],
             per[s][TR_EVAL_AUSTEN], per[s][TR_EVAL_MIXED]);
    text_sum("validation perplexity", tr_eval_sum(&r, TR_EVAL_VALID, -1));
    text_sum("test perplexity", tr_eval_sum(&r, TR_EVAL_TEST, -1));
    text_sum("test perplexity, KJV", tr_eval_sum(&r, TR_EVAL_TEST, TR_EVAL_KJV));
    text_sum("test perplexity, Austen", tr_eval_sum(&r, TR_EVAL_TEST, TR_EVAL_AUSTEN));
    printf("speed %.0f tokens/s (%llu tokens forwarded in %.2f s, %s)\n",
           r.forwarded / (r.seconds > 0 ? r.seconds : 1e-9), (unsigned long long)r.forwarded, r.seconds,
           o.fp16 ? "fp16" : "quantized");
  }
  tr_eval_result_free(&r);
  tr_eval_free(&d);
  rb_buf_free(&err);
  load_free(&L);
  return rc ? (rc == RB_EUSER ? 1 : 2) : 0;
}
