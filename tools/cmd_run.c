/* cmd_run.c: rabit run: generate text from a prompt, streaming tokens, with
 * greedy, temperature, top-k and top-p sampling from a seeded generator. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/commands.h"
#include "tools/load.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: rabit run MODEL.ir --weights W.safetensors --prompt TEXT [options]\n"
          "\n"
          "  -n N               tokens to generate (default 128)\n"
          "  --tokenizer FILE   the model's .gguf or a tokenizer.txt (default: tokenizer.txt beside\n"
          "                     the weights, as rabit import writes it)\n"
          "  --chat             wrap the prompt in the Instruct model's chat template\n"
          "  --temp T           temperature; 0 is greedy (default 0)\n"
          "  --top-k K          sample among the K most likely tokens (default 0: all)\n"
          "  --top-p P          nucleus sampling (default 1.0)\n"
          "  --seed S           sampling seed (default 1)\n"
          "  --fp16             run every linear in fp16 with cuBLAS (the unquantized baseline)\n"
          "  --random-weights   random weights of the model's shapes (no --weights needed)\n"
          "  --max-ctx N        KV-cache length (default 2048)\n"
          "  --tokens IDS       comma-separated prompt token ids instead of --prompt\n"
          "  --logits-out FILE  write the prompt's logits (tokens x vocab, float32) to FILE\n"
          "  --ids-out FILE     write the prompt and generated token ids, one per line, to FILE\n"
          "  --quiet            print only the generated text\n");
}

int cmd_run(int argc, char **argv) {
  LoadOptions o = {0};
  o.tool = "rabit run";
  const char *prompt = NULL, *tok_path = NULL, *ids = NULL, *logits_out = NULL, *ids_out = NULL;
  int n = 128, chat = 0, top_k = 0, quiet = 0;
  float temp = 0, top_p = 1;
  unsigned long long seed = 1;
  static const char *const with_value[] = {"--weights", "--tokenizer", "--prompt", "--tokens", "-n", "--temp",
                                           "--top-k", "--top-p", "--seed", "--max-ctx",
                                           "--logits-out", "--ids-out"};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    for (size_t j = 0; j < sizeof with_value / sizeof with_value[0]; j++)
      if (!strcmp(a, with_value[j])) {
        if (i + 1 >= argc) {
          fprintf(stderr, "rabit run: %s needs a value\n", a);
          return 1;
        }
        v = argv[++i];
      }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--weights")) o.weights = v;
    else if (!strcmp(a, "--tokenizer")) tok_path = v;
    else if (!strcmp(a, "--prompt")) prompt = v;
    else if (!strcmp(a, "--tokens")) ids = v;
    else if (!strcmp(a, "-n")) n = atoi(v);
    else if (!strcmp(a, "--temp")) temp = (float)atof(v);
    else if (!strcmp(a, "--top-k")) top_k = atoi(v);
    else if (!strcmp(a, "--top-p")) top_p = (float)atof(v);
    else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--max-ctx")) o.max_ctx = atoi(v);
    else if (!strcmp(a, "--logits-out")) logits_out = v;
    else if (!strcmp(a, "--ids-out")) ids_out = v;
    else if (!strcmp(a, "--chat")) chat = 1;
    else if (!strcmp(a, "--fp16")) o.fp16 = 1;
    else if (!strcmp(a, "--random-weights")) o.random = 1;
    else if (!strcmp(a, "--quiet")) quiet = 1;
    else if (a[0] == '-') {
      fprintf(stderr, "rabit run: unknown option '%s' (see rabit run --help)\n", a);
      return 1;
    } else if (!o.ir) o.ir = a;
    else {
      fprintf(stderr, "rabit run: one model, got '%s' too\n", a);
      return 1;
    }
  }
  if (!o.ir || (!o.weights && !o.random) || (!prompt && !ids) || n < 0 || top_p <= 0 || top_p > 1) {
    usage(stderr);
    return 1;
  }
  RtTokenizer *tok = NULL;
  if (prompt || tok_path || o.weights) { /* --tokens with random weights needs none: ids are printed */
    tok = load_tokenizer(tok_path, o.weights, "rabit run");
    if (!tok && (prompt || tok_path)) return 1;
  }
  /* The prompt's tokens. */
  int32_t *tokens = NULL;
  size_t nt = 0;
  if (ids) {
    tokens = malloc((strlen(ids) / 2 + 2) * sizeof *tokens);
    for (char *s = (char *)ids, *end; *s; s = *end ? end + 1 : end) {
      long t = strtol(s, &end, 10);
      if (end == s) break;
      tokens[nt++] = (int32_t)t;
    }
  } else {
    RbBuf text = {0};
    if (chat) rt_tok_chat_prompt(tok, prompt, &text);
    else rb_buf_puts(&text, prompt);
    if (rt_tok_encode(tok, text.data, text.len, &tokens, &nt)) {
      fprintf(stderr, "rabit run: cannot tokenize the prompt\n");
      return 1;
    }
    rb_buf_free(&text);
  }
  Loaded L;
  int rc = load_model(&o, &L);
  if (rc) return rc;
  int V = rt_model_vocab(L.model), ctx = rt_model_max_ctx(L.model), chunk = rt_model_max_tokens(L.model);
  if ((int)nt < 1 || (int)nt + n > ctx) {
    fprintf(stderr, "rabit run: %zu prompt tokens + %d new exceed the context of %d (--max-ctx)\n", nt, n, ctx);
    load_free(&L);
    return 1;
  }
  if (!quiet)
    fprintf(stderr, "rabit run: %s, %d kernels (%d cached), loaded in %.0f ms + weights %.0f ms, %.1f MB on the GPU\n",
            o.fp16 ? "fp16" : "2-bit", L.kernels, L.hits, L.ms_compile, L.ms_weights,
            rt_model_total_bytes(L.model) / 1e6);
  float *logits = malloc((size_t)V * sizeof *logits);
  RtSampler *sampler = rt_sampler_new(V, temp, top_k, top_p, seed);
  FILE *lf = logits_out ? fopen(logits_out, "wb") : NULL, *idf = ids_out ? fopen(ids_out, "w") : NULL;
  if ((logits_out && !lf) || (ids_out && !idf)) {
    fprintf(stderr, "rabit run: cannot write '%s'\n", logits_out && !lf ? logits_out : ids_out);
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
  return rc ? 2 : 0;
}
