/* cmd_run.c: rabit run: generate text from a prompt, streaming tokens, with
 * greedy, temperature, top-k and top-p sampling from a seeded generator. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/args.h"
#include "tools/commands.h"
#include "tools/load.h"
#include "tools/paths.h"

/* --tokens: ids separated by commas or spaces, kept as text until the prompt is built (args.h). */
static const char *parse_tokens(const char *v, void *dest) {
  if (args_ints(v, 0, INT32_MAX, NULL, INT32_MAX) < 0) return "token ids separated by commas or spaces";
  *(const char **)dest = v;
  return NULL;
}

int cmd_run(int argc, char **argv) {
  LoadOptions o = {0};
  o.tool = "rabit run";
  const char *prompt = NULL, *tok_path = NULL, *ids = NULL, *logits_out = NULL, *ids_out = NULL;
  int n = 128, chat = 0, top_k = 0, quiet = 0;
  float temp = 0, top_p = 1;
  uint64_t seed = 1;
  const ArgsOpt opts[] = {
      ARGS_OPT_STRING(NULL, "--weights", &o.weights, "W", NULL),
      ARGS_OPT_TEXT(NULL, "--prompt", &prompt, "TEXT", NULL),
      ARGS_OPT_INT("-n", NULL, &n, "N", 0, 1000000, "tokens to generate (default 128)"),
      ARGS_OPT_STRING(NULL, "--tokenizer", &tok_path, "FILE",
                      "the model's .gguf or a tokenizer.txt (default: tokenizer.txt beside\n"
                      "the weights, as rabit import writes it)"),
      ARGS_OPT_FLAG(NULL, "--chat", &chat, "wrap the prompt in the Instruct model's chat template"),
      ARGS_OPT_FLOAT(NULL, "--temp", &temp, "T", 0, INFINITY, ARGS_CLOSED, "temperature; 0 is greedy (default 0)"),
      ARGS_OPT_INT(NULL, "--top-k", &top_k, "K", 0, 1000000,
                   "sample among the K most likely tokens (default 0: all)"),
      ARGS_OPT_FLOAT(NULL, "--top-p", &top_p, "P", 0, 1, ARGS_OPEN_LO, "nucleus sampling (default 1.0)"),
      ARGS_OPT_U64(NULL, "--seed", &seed, "S", "sampling seed (default 1)"),
      ARGS_OPT_FLAG(NULL, "--fp16", &o.fp16, "run every linear in fp16 with cuBLAS (the unquantized baseline)"),
      ARGS_OPT_FLAG(NULL, "--random-weights", &o.random,
                    "random weights of the model's shapes (no --weights needed)"),
      ARGS_OPT_INT(NULL, "--max-ctx", &o.max_ctx, "N", 1, 1 << 20, "KV-cache length (default 2048)"),
      ARGS_OPT_CUSTOM(NULL, "--tokens", parse_tokens, &ids, "IDS",
                      "comma-separated prompt token ids instead of --prompt"),
      ARGS_OPT_STRING(NULL, "--logits-out", &logits_out, "FILE",
                      "write the prompt's logits (tokens x vocab, float32) to FILE"),
      ARGS_OPT_STRING(NULL, "--ids-out", &ids_out, "FILE",
                      "write the prompt and generated token ids, one per line, to FILE"),
      ARGS_OPT_FLAG(NULL, "--quiet", &quiet, "print only the generated text"),
      ARGS_OPT_CUSTOM(NULL, "--target", load_parse_target, &o.target, "T", LOAD_TARGET_HELP),
      ARGS_OPT_INT(NULL, "--threads", &o.threads, "N", 1, 1024, "the host target's threads (default: the online CPUs)"),
      ARGS_OPT_HELP("-h", "--help", NULL),
  };
  const ArgsSpec spec = {"rabit run", "usage: rabit run MODEL.ir --weights W.safetensors --prompt TEXT [options]\n\n",
                         NULL, 19, opts, ARGS_COUNT(opts), 1, "one model"};
  int rc = args_parse(&spec, argc, argv, &o.ir, NULL);
  if (rc != ARGS_GO) return rc;
  if (!o.ir) return args_missing(&spec, "a model IR (MODEL.ir)");
  if (!o.weights && !o.random) return args_missing(&spec, "--weights W (or --random-weights)");
  if (!prompt && !ids) return args_missing(&spec, "--prompt TEXT (or --tokens IDS)");
  /* The files named first: a missing model is not reported as a missing tokenizer. */
  if (load_check(&o) || (logits_out && paths_output_stream("rabit run", "--logits-out", logits_out)) ||
      (ids_out && paths_output_stream("rabit run", "--ids-out", ids_out)))
    return 1;
  RtTokenizer *tok = NULL;
  if (prompt || tok_path || o.weights) { /* --tokens with random weights needs none: ids are printed */
    tok = load_tokenizer(tok_path, o.weights, "rabit run");
    if (!tok && (prompt || tok_path)) return 1;
  }
  /* The prompt's tokens. */
  int32_t *tokens = NULL;
  size_t nt = 0;
  if (ids) {
    nt = (size_t)args_ints(ids, 0, INT32_MAX, NULL, INT32_MAX);
    int *v = malloc(nt * sizeof *v);
    tokens = malloc(nt * sizeof *tokens);
    args_ints(ids, 0, INT32_MAX, v, (int)nt);
    for (size_t i = 0; i < nt; i++) tokens[i] = v[i];
    free(v);
  } else {
    RbBuf text = {0};
    if (chat) rt_tok_chat_prompt(tok, prompt, &text);
    else rb_buf_puts(&text, prompt);
    rc = rt_tok_encode(tok, text.data, text.len, &tokens, &nt);
    rb_buf_free(&text);
    if (rc) {
      fprintf(stderr, "rabit run: cannot tokenize the prompt\n");
      rt_tok_free(tok);
      return 1;
    }
  }
  Loaded L;
  rc = load_model(&o, &L);
  if (rc) {
    free(tokens);
    rt_tok_free(tok);
    return rc;
  }
  int V = rt_model_vocab(L.model), ctx = rt_model_max_ctx(L.model), chunk = rt_model_max_tokens(L.model);
  const char *bad = NULL;
  char why[160];
  if ((int)nt < 1 || (int)nt + n > ctx)
    snprintf(why, sizeof why, "%zu prompt tokens + %d new exceed the context of %d (--max-ctx)", nt, n, ctx), bad = why;
  for (size_t i = 0; !bad && i < nt; i++)
    if (tokens[i] >= V) /* the embedding lookup would read past the table */
      snprintf(why, sizeof why, "token id %d is outside the model's vocabulary of %d", (int)tokens[i], V), bad = why;
  if (bad) {
    fprintf(stderr, "rabit run: %s\n", bad);
    free(tokens);
    rt_tok_free(tok);
    load_free(&L);
    return 1;
  }
  if (!quiet)
    fprintf(stderr, "rabit run: %s, %d kernels (%d cached), loaded in %.0f ms + weights %.0f ms, %.1f MB %s\n",
            o.fp16 ? "fp16" : "2-bit", L.kernels, L.hits, L.ms_compile, L.ms_weights,
            rt_model_total_bytes(L.model) / 1e6, L.where);
  float *logits = malloc((size_t)V * sizeof *logits);
  RtSampler *sampler = rt_sampler_new(V, temp, top_k, top_p, seed);
  FILE *lf = logits_out ? fopen(logits_out, "wb") : NULL, *idf = ids_out ? fopen(ids_out, "w") : NULL;
  int cannot_write = (logits_out && !lf) || (ids_out && !idf);
  if (cannot_write) {
    fprintf(stderr, "rabit run: cannot write '%s': %s\n", logits_out && !lf ? logits_out : ids_out, strerror(errno));
    rc = 1;
  }
  for (size_t i = 0; idf && i < nt; i++) fprintf(idf, "%d\n", tokens[i]);
  double t0 = rb_now_ms();
  for (size_t at = 0; !rc && at < nt; at += (size_t)chunk) { /* prefill in chunks */
    int T = (int)(nt - at) < chunk ? (int)(nt - at) : chunk;
    rc = rt_model_forward(L.model, tokens + at, T, (int)at);
    for (int r = 0; !rc && lf && r < T; r++) { /* every row, for comparing with a reference */
      rc = rt_model_logits(L.model, r, 1, logits);
      if (!rc && fwrite(logits, sizeof *logits, (size_t)V, lf) != (size_t)V) rc = 1;
    }
    if (!rc && at + (size_t)T == nt) rc = rt_model_logits(L.model, T - 1, 1, logits);
  }
  if (lf && fclose(lf)) rc = 1;
  double t_prefill = rb_now_ms() - t0;
  if (tok && !quiet && prompt) printf("%s", chat ? "" : prompt);
  fflush(stdout);
  int generated = 0, eos = tok ? rt_tok_eos(tok) : -1;
  double t1 = rb_now_ms();
  for (int i = 0; !rc && i < n; i++) {
    int next = rt_sample(sampler, logits);
    generated++;
    if (idf) fprintf(idf, "%d\n", next);
    if (next == eos) break;
    if (tok) {
      RbBuf piece = {0};
      rt_tok_decode(tok, &next, 1, &piece);
      if (piece.data) fputs(piece.data, stdout);
      rb_buf_free(&piece);
    } else printf("%d ", next);
    fflush(stdout);
    if (i + 1 < n) {
      rc = rt_model_decode(L.model, next, (int)nt + i);
      if (!rc) rc = rt_model_logits(L.model, 0, 1, logits);
    }
  }
  double t_decode = rb_now_ms() - t1;
  if (idf) fclose(idf);
  printf("\n");
  fflush(stdout); /* the text before the statistics on stderr */
  if (!quiet && !rc)
    fprintf(stderr, "rabit run: prompt %zu tokens in %.1f ms (%.0f tok/s); generated %d tokens at %.1f tok/s\n", nt,
            t_prefill, nt / (t_prefill / 1e3), generated, generated > 1 ? (generated - 1) / (t_decode / 1e3) : 0.0);
  free(logits);
  rt_sampler_free(sampler);
  free(tokens);
  rt_tok_free(tok);
  load_free(&L);
  return cannot_write ? 1 : rc ? 2 : 0;
}
