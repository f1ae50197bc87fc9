/* cmd_quantize.c: `rabit quantize MODEL.ir IN -o OUT`, post-training
 * quantization of a Hugging Face Llama safetensors file to the canonical packed
 * format. The IR says which linears are quantized and with what k; the work is
 * the trainer's (tr_quant_model), this file parses, prints and copies the tokenizer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/args.h"
#include "tools/commands.h"
#include "tools/paths.h"
#include "trainer/trainer.h"

/* One line, shown by --help and by every usage error. */
#define USAGE                                                                                    \
  "usage: rabit quantize MODEL.ir IN.safetensors -o OUT.safetensors [--paths k] [--rounds T]"    \
  " [--skip LIST] [--threads N] [--force]\n"

/* The --help text around the options. */
static const char help_head[] =
    USAGE
    "\n"
    "Post-training quantization to residual binary paths, as MODEL.ir says: each weight\n"
    "bound by a linear with quant = rabit(paths = k) (its own, else the file's default)\n"
    "becomes <name>.bits (I32 [k, N, ceil(K/32)]), <name>.g (F16 [k, N]) and <name>.h\n"
    "(F16 [k, K]), with that op's k; every other tensor (embeddings, norms, linears with\n"
    "quant = none, lm_head) is copied unchanged. The weights the IR binds must be in IN,\n"
    "full precision (F16, BF16 or F32), with the IR's [N, K]. The signs are those RaBiT's\n"
    "coupled forward derives from the original weight, so the output is also RaBiT's step 0.\n"
    "\n"
    "options:\n";
static const char help_tail[] = "\nPrints each layer's k and relative error ||W - W_hat|| / ||W|| and a summary.\n";

/* 1 when s ends in suffix. */
static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

/* The trainer's progress (ctx: the options): the plan once, then one line per weight as written. */
static void progress(void *ctx, const TrQuantProgress *p) {
  const TrQuantOptions *o = ctx;
  if (p->index == 0) {
    printf("quantizing %d weights of %s as %s says (", p->count, o->in, o->ir);
    for (int k = 1, first = 1; k <= TR_MAX_PATHS; k++)
      if (p->per_k[k]) printf("%s%d at k = %d", first ? "" : ", ", p->per_k[k], k), first = 0;
    printf("%s%d refinement rounds, %d threads)\n", p->count ? "; " : "", o->rounds, p->threads);
    if (p->skipped) printf("keeping %d weights full precision (--skip)\n", p->skipped);
  } else {
    const TrPtqStats *s = p->stats;
    printf("[%*d/%d] %-40s %5d x %-5d %-4s k=%d rel_err %.6f  (after each path:", p->count > 99 ? 3 : 2, p->index,
           p->count, p->name, p->N, p->K, p->dtype, p->k, s->rel_err);
    for (int i = 0; i < p->k; i++) printf(" %.4f", s->rel_err_path[i]);
    if (o->rounds)
      printf("; greedy %.6f, kept %s %d", s->rel_err_greedy, s->round_kept ? "round" : "greedy", s->round_kept);
    printf(")  %.0f ms\n", p->ms);
  }
  fflush(stdout);
}

/* rabit import leaves tokenizer.txt beside the weights; keep it beside the
 * quantized ones too, so that rabit run finds it. A failure only warns. */
static void copy_tokenizer(const char *in, const char *out) {
  char from[4096], to[4096];
  const char *a = strrchr(in, '/'), *b = strrchr(out, '/');
  snprintf(from, sizeof from, "%.*stokenizer.txt", a ? (int)(a - in + 1) : 0, in);
  snprintf(to, sizeof to, "%.*stokenizer.txt", b ? (int)(b - out + 1) : 0, out);
  RbBuf text = {0};
  if (strcmp(from, to) == 0 || access(to, F_OK) == 0 || rb_read_file(from, &text) != 0) {
    rb_buf_free(&text);
    return;
  }
  const void *part = text.data;
  if (rb_write_atomic(to, &part, &text.len, 1, NULL) != RB_OK)
    fprintf(stderr, "rabit quantize: warning: could not copy %s to %s: %s\n", from, to, strerror(errno));
  else printf("copied %s beside the output\n", from);
  rb_buf_free(&text);
}

/* See commands.h. */
static const char *parse_init(const char *v, void *dest) {
  static const char *const names[] = {"greedy", "rabit"};
  int i = args_pick(v, names, 2);
  if (i < 0) return "greedy or rabit";
  *(int *)dest = i;
  return NULL;
}

static void train_progress(void *ctx, const TrTrainProgress *p) {
  (void)ctx;
  if (p->event == TR_EVENT_READY) printf("%s\n", p->text);
  if (p->event == TR_EVENT_EVAL) printf("validation perplexity %.3f (%d windows)\n", p->val_ppl, p->windows);
}

/* --init rabit: the calibrated initialization is the trainer's (it runs the FP model on the GPU), so
 * this PTQ is `rabit train --method ptq --init rabit`: the same export as the trainer's step 0. */
static int quantize_rabit_init(const TrQuantOptions *q, const char *data, const char *eval, const TrInitOptions *io,
                               uint64_t calib, uint64_t seed) {
  TrTrainOptions o = {.step = {.ir = q->ir, .fe = q->fe, .weights = q->in, .batch = 8, .seq = 512,
                               .ptq_rounds = q->rounds},
                      .data = data, .eval_data = eval, .method = "ptq", .init = "rabit", .init_opt = *io,
                      .calib_tokens = calib, .seed = seed, .export_path = q->out, .progress = train_progress};
  TrTrainResult r;
  RbBuf err = {0};
  int rc = tr_train(&o, &r, &err);
  if (rc) args_report("rabit quantize", err.data ? err.data : "failed");
  else printf("wrote %s\n", r.export_path);
  rb_buf_free(&err);
  return rc == RB_EINTERNAL ? 2 : rc ? 1 : 0;
}

int cmd_quantize(int argc, char **argv) {
  TrQuantOptions o = {.rounds = 2, .progress = progress};
  int force = 0, init = 0;
  const char *data = NULL, *eval = NULL;
  float init_a = 1.5f, init_b = 1.0f;
  TrInitOptions io = {.rounds = 4};
  uint64_t calib = 0, seed = 0;
  const ArgsOpt opts[] = {
      ARGS_OPT_STRING("-o", "--output", &o.out, "FILE", "output safetensors (required)"),
      ARGS_OPT_INT(NULL, "--paths", &o.fe.paths, "k", 1, TR_MAX_PATHS,
                   "paths, 1..4, for the ops without their own quant = (overrides\n"
                   "the file's default, as rabitc --paths does)"),
      ARGS_OPT_INT(NULL, "--rounds", &o.rounds, "T", 0, 1000,
                   "Gauss-Seidel refinement rounds after the greedy fit (default 2;\n"
                   "0 = greedy residual SVID alone); each round costs about one greedy fit;\n"
                   "the result is never worse than greedy"),
      ARGS_OPT_STRING(NULL, "--skip", &o.skip, "LIST",
                      "comma-separated POSIX extended regexes; a weight whose IR name any of\n"
                      "them matches (anywhere in the name) stays full precision,\n"
                      "e.g. --skip 'layers\\.0\\.,down_proj'"),
      ARGS_OPT_INT(NULL, "--threads", &o.threads, "N", 1, 64,
                   "quantize N layers at once (default: the CPUs, at most 8)"),
      ARGS_OPT_FLAG(NULL, "--force", &force, "write OUT even when it is the input file itself"),
      ARGS_OPT_CUSTOM(NULL, "--init", parse_init, &init, "I",
                      "greedy (default: the residual SVID above) or rabit (DESIGN.md's function-\n"
                      "preserving initialization, calibrated on the FP model on the GPU; needs --data)"),
      ARGS_OPT_STRING(NULL, "--data", &data, "DIR", "--init rabit: the training shards to calibrate on"),
      ARGS_OPT_STRING(NULL, "--eval-data", &eval, "DIR", "--init rabit: held-out shards: report validation perplexity"),
      ARGS_OPT_FLOAT(NULL, "--init-a", &init_a, "A", 0, 4, ARGS_CLOSED, "--init rabit: s_out's exponent (default 1.5)"),
      ARGS_OPT_FLOAT(NULL, "--init-b", &init_b, "B", 0, 4, ARGS_CLOSED, "--init rabit: s_in's exponent (default 1)"),
      ARGS_OPT_INT(NULL, "--init-rounds", &io.rounds, "T", 0, 100, "--init rabit: Gauss-Seidel rounds (default 4)"),
      ARGS_OPT_U64(NULL, "--calib-tokens", &calib, "N", "--init rabit: calibration tokens (default 65536)"),
      ARGS_OPT_U64(NULL, "--seed", &seed, "S", "--init rabit: the calibration windows' seed (default 0)"),
      ARGS_OPT_HELP("-h", "--help", "this help"),
  };
  const ArgsSpec spec = {"rabit quantize", help_head, help_tail, 20, opts, ARGS_COUNT(opts), 2,
                         "two files, the model IR and the input"};
  const char *pos[2] = {0};
  int npos, rc = args_parse(&spec, argc, argv, pos, &npos);
  if (rc != ARGS_GO) return rc;
  for (int i = 0; i < npos; i++) /* the weights of llama.cpp: rabit import reads them */
    if (paths_is_gguf(pos[i])) {
      fprintf(stderr, "rabit quantize: '%s' is a GGUF file; convert it first with 'rabit import %s -o DIR', then "
              "quantize DIR/model.safetensors\n", pos[i], pos[i]);
      return 1;
    }
  /* The old form, `rabit quantize IN -o OUT`, chose layers by name; the IR now says. */
  if (npos < 2 || ends_with(pos[0], ".safetensors")) {
    const char *why = npos && ends_with(pos[0], ".safetensors") ? "the model IR comes first, then the input"
                      : npos ? "no input safetensors" : "no model IR and no input";
    fprintf(stderr, "rabit quantize: %s\n" USAGE "The IR says which linears are quantized and with what k "
            "(e.g. samples/smollm2-135m.ir).\n", why);
    return 1;
  }
  if (!o.out) {
    fprintf(stderr, "rabit quantize: no output file (-o OUT.safetensors)\n");
    return 1;
  }
  /* Every file before the work: the quantization takes minutes. */
  for (int i = 0; i < 2; i++)
    if (paths_input("rabit quantize", NULL, pos[i])) return 1;
  if (paths_output_file("rabit quantize", "-o", o.out, "model.safetensors")) return 1;
  for (int i = 0; i < 2; i++)
    if (paths_same_file(pos[i], o.out) && (i == 0 || !force)) {
      fprintf(stderr, "rabit quantize: -o '%s' is the %s '%s'; writing it would overwrite it%s\n", o.out,
              i ? "input" : "model IR", pos[i], i ? " (use --force to overwrite)" : "");
      return 1;
    }
  o.ir = pos[0], o.in = pos[1];
  o.ctx = &o;
  if (init) {
    if (!data) return args_missing(&spec, "--data DIR (the calibration's training shards) for --init rabit");
    io.a = init_a, io.b = init_b;
    return quantize_rabit_init(&o, data, eval, &io, calib, seed);
  }

  TrQuantResult r;
  RbBuf err = {0};
  rc = tr_quant_model(&o, &r, &err);
  if (r.diag.data) fputs(r.diag.data, stderr);
  args_report("rabit quantize", err.data);
  for (const char *l = r.warnings.data; l && *l;) {
    const char *nl = strchr(l, '\n');
    int len = nl ? (int)(nl - l) : (int)strlen(l);
    fprintf(stderr, "rabit quantize: warning: %.*s\n", len, l);
    l += len + (nl != NULL);
  }
  if (rc == RB_OK) {
    printf("quantized %d weights (%.1f M parameters): overall rel_err %.6f, worst %.6f (%s)\n", r.quantized,
           r.params / 1e6, r.rel_err, r.worst, r.worst_name ? r.worst_name : "-");
    printf("%.3f bits per quantized weight; %s: %.1f MB -> %s: %.1f MB; %.1f s\n",
           r.params ? r.bytes_packed * 8.0 / r.params : 0.0, o.in, r.bytes_in / 1e6, o.out, r.bytes_out / 1e6,
           r.ms / 1e3);
    copy_tokenizer(o.in, o.out);
  }
  tr_quant_result_free(&r);
  rb_buf_free(&err);
  return rc == RB_OK ? 0 : rc == RB_EUSER ? 1 : 2;
}
