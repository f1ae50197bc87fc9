/* cmd_ppl.c: rabit ppl: perplexity of a model on a text file. The text is
 * tokenized whole and cut into non-overlapping windows of --ctx tokens; in
 * each window every token after the first is predicted from the ones before
 * it (the KV cache starts empty per window), and the perplexity is
 * exp(mean negative log-likelihood) over all predicted tokens. The NLL is
 * taken on the GPU (rt_model_nll); --cpu-nll keeps the old check: the logits
 * copied back and log-softmaxed here, in double. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/args.h"
#include "tools/commands.h"
#include "tools/load.h"
#include "tools/paths.h"
#include "trainer/trainer.h"

/* -log softmax(logits)[target], in double: the --cpu-nll reference. */
static double nll(const float *logits, int V, int target) {
  float mx = logits[0];
  for (int i = 1; i < V; i++)
    if (logits[i] > mx) mx = logits[i];
  double sum = 0;
  for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
  return log(sum) + mx - logits[target];
}

int cmd_ppl(int argc, char **argv) {
  LoadOptions o = {0};
  o.tool = "rabit ppl";
  const char *text_path = NULL, *tok_path = NULL, *ids_out = NULL;
  int ctx = 1024, max_windows = 0, quiet = 0, cpu_nll = 0, chunk_max = 1024;
  const ArgsOpt opts[] = {
      ARGS_OPT_STRING(NULL, "--weights", &o.weights, "W", "the model's weights (safetensors)"),
      ARGS_OPT_STRING(NULL, "--text", &text_path, "FILE", "the text, tokenized whole and cut into windows"),
      ARGS_OPT_INT(NULL, "--ctx", &ctx, "N", 2, 1 << 20, "window length in tokens (default 1024)"),
      ARGS_OPT_INT(NULL, "--chunk", &chunk_max, "N", 1, 1 << 20, "tokens a forward call takes (default 1024: a window of 1024 in one forward)"),
      ARGS_OPT_STRING(NULL, "--tokenizer", &tok_path, "FILE",
                      "the model's .gguf or a tokenizer.txt (default: beside the weights)"),
      ARGS_OPT_INT(NULL, "--max-windows", &max_windows, "N", 0, 1000000,
                   "stop after N windows (default: the whole text)"),
      ARGS_OPT_FLAG(NULL, "--fp16", &o.fp16, "every linear in fp16 with cuBLAS (the unquantized baseline)"),
      ARGS_OPT_FLAG(NULL, "--random-weights", &o.random, "random weights of the model's shapes (no --weights; for speed)"),
      ARGS_OPT_INT(NULL, "--paths", &o.paths, "K", 1, 4, "residual paths for linears without their own quant"),
      ARGS_OPT_STRING(NULL, "--ids-out", &ids_out, "FILE",
                      "write the evaluated token ids (int32, window after window) to FILE"),
      ARGS_OPT_FLAG(NULL, "--cpu-nll", &cpu_nll,
                    "copy the logits back and take the log-softmax on the CPU (the slow check of the GPU path)"),
      ARGS_OPT_FLAG(NULL, "--quiet", &quiet, "no progress bar"),
      ARGS_OPT_CUSTOM(NULL, "--target", load_parse_target, &o.target, "T", LOAD_TARGET_HELP),
      ARGS_OPT_INT(NULL, "--threads", &o.threads, "N", 1, 1024, "the host target's threads (default: the online CPUs)"),
      ARGS_OPT_HELP("-h", "--help", NULL),
  };
  const ArgsSpec spec = {"rabit ppl", "usage: rabit ppl MODEL.ir --weights W.safetensors --text FILE [options]\n\n",
                         NULL, 19, opts, ARGS_COUNT(opts), 1, "one model"};
  int rc = args_parse(&spec, argc, argv, &o.ir, NULL);
  if (rc != ARGS_GO) return rc;
  if (!o.ir) return args_missing(&spec, "a model IR (MODEL.ir)");
  if (!o.weights && !o.random) return args_missing(&spec, "--weights W (or --random-weights)");
  if (!text_path) return args_missing(&spec, "--text FILE");
  if (load_check(&o) || (ids_out && paths_output_stream("rabit ppl", "--ids-out", ids_out))) return 1;
  RbBuf text = {0};
  RbBuf why = {0};
  if (tr_text_read(text_path, &text, &why)) {
    fprintf(stderr, "rabit ppl: %s\n", why.data ? why.data : text_path);
    rb_buf_free(&why);
    rb_buf_free(&text);
    return 1;
  }
  RtTokenizer *tok = load_tokenizer(tok_path, o.weights, "rabit ppl");
  int32_t *ids = NULL;
  size_t nt = 0;
  if (tok && rt_tok_encode(tok, text.data, text.len, &ids, &nt)) {
    fprintf(stderr, "rabit ppl: cannot tokenize '%s'\n", text_path);
    rt_tok_free(tok);
    tok = NULL;
  }
  rb_buf_free(&text);
  if (!tok) return 1;
  o.max_ctx = ctx;
  o.max_tokens = ctx < chunk_max ? ctx : chunk_max;
  Loaded L;
  rc = load_model(&o, &L);
  if (rc) {
    rb_free(ids);
    rt_tok_free(tok);
    return rc;
  }
  int V = rt_model_vocab(L.model), chunk = rt_model_max_tokens(L.model);
  size_t windows = nt / (size_t)ctx;
  if (max_windows > 0 && (size_t)max_windows < windows) windows = (size_t)max_windows;
  if (!windows) {
    fprintf(stderr, "rabit ppl: '%s' has %zu tokens, fewer than one window of %d\n", text_path, nt, ctx);
    rc = 1;
  }
  if (!rc && ids_out) {
    FILE *f = fopen(ids_out, "wb");
    size_t n = windows * (size_t)ctx;
    int bad = !f || fwrite(ids, sizeof *ids, n, f) != n;
    if ((f && fclose(f)) || bad) {
      fprintf(stderr, "rabit ppl: cannot write '%s': %s\n", ids_out, strerror(errno));
      rc = 1;
    }
  }
  if (rc) {
    rb_free(ids);
    rt_tok_free(tok);
    load_free(&L);
    return rc;
  }
  float *logits = cpu_nll ? malloc((size_t)chunk * V * sizeof *logits) : NULL;
  double total = 0;
  size_t count = 0;
  double t0 = rb_now_ms(), t1 = t0; /* t1: the end of the first window, which carries the warm-up */
  for (size_t w = 0; !rc && w < windows; w++) {
    if (w == 1) t1 = rb_now_ms();
    const int32_t *win = ids + w * (size_t)ctx;
    if (!cpu_nll) {
      double sum = 0;
      rc = rt_model_nll(L.model, win, ctx, &sum, NULL);
      total += sum;
      count += (size_t)ctx - 1;
    }
    for (int at = 0; cpu_nll && !rc && at < ctx; at += chunk) {
      int T = ctx - at < chunk ? ctx - at : chunk;
      rc = rt_model_forward(L.model, win + at, T, at);
      if (!rc) rc = rt_model_logits(L.model, 0, T, logits);
      for (int r = 0; !rc && r < T; r++)
        if (at + r + 1 < ctx) {
          total += nll(logits + (size_t)r * V, V, win[at + r + 1]);
          count++;
        }
    }
    if (!quiet && !rc) {
      int bar = (int)(30 * (w + 1) / windows);
      fprintf(stderr, "\r  [%.*s%*s] window %zu/%zu  ppl %.3f  %.0f tok/s", bar, "##############################",
              30 - bar, "", w + 1, windows, exp(total / count), (w + 1) * ctx / ((rb_now_ms() - t0) / 1e3));
    }
  }
  double secs = (rb_now_ms() - t0) / 1e3;
  if (!quiet) fprintf(stderr, "\n");
  if (rc) fprintf(stderr, "rabit ppl: %s\n", rt_model_error(L.model));
  if (!rc) {
    printf("perplexity %.4f over %zu tokens (%zu windows of %d) of %s, %s\n", exp(total / count), count, windows, ctx,
           text_path, o.fp16 ? "fp16" : "quantized");
    printf("speed %.0f tokens/s (%zu tokens forwarded in %.2f s, NLL %s)", windows * ctx / secs,
           windows * (size_t)ctx, secs, cpu_nll ? "on the CPU, in double" : L.where);
    double steady = (t0 + secs * 1e3 - t1) / 1e3;
    if (windows > 1 && steady > 0)
      printf("; %.0f tokens/s after the first window (%.0f ms, the warm-up)", (double)(windows - 1) * ctx / steady,
             t1 - t0);
    printf("\n");
  }
  free(logits);
  rb_free(ids);
  rt_tok_free(tok);
  load_free(&L);
  return rc ? 2 : 0;
}
