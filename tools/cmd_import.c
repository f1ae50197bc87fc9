/* cmd_import.c: `rabit import model.gguf -o DIR`: the arguments, the progress
 * lines and the exit status around rt_import_gguf (runtime/formats/import.c),
 * then DIR/tokenizer.txt from the still-open GGUF via rt_tok_save_vocab. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "runtime/formats/formats.h"
#include "runtime/text/text.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/paths.h"

/* The --help text around the options. */
static const char help_head[] =
    "usage: rabit import MODEL.gguf -o DIR [--force] [--quiet]\n"
    "\n"
    "Convert a llama.cpp GGUF Llama model (F32, F16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K\n"
    "tensors) to DIR/model.safetensors and DIR/config.json, loadable by Hugging\n"
    "Face transformers (LlamaForCausalLM) and by `rabit quantize`.\n"
    "\n";
static const char help_tail[] =
    "\n"
    "Matrices are written as F16, norms as F32, under Hugging Face Llama names.\n"
    "Quantized tensors are dequantized (the import cannot undo quantization\n"
    "error). llama.cpp's row permutation of Q and K is undone. lm_head.weight is\n"
    "written only when the GGUF has output.weight; otherwise the config says\n"
    "tie_word_embeddings. Exit status: 0 ok, 1 bad input, 2 internal error.\n";

/* The progress lines, one per stage the library reports. */
static void print_progress(void *ctx, const RtImportProgress *p) {
  const RtImportModel *m = p->model;
  const char *in = ctx;
  switch (p->stage) {
  case RT_IMPORT_BEGIN:
    printf("importing %s (GGUF v%d, '%s'): llama, %" PRIu64 " layers, width %" PRIu64
           ", %" PRIu64 "/%" PRIu64 " heads of %" PRIu64 ", FFN %" PRIu64 ", vocab %" PRIu64 "\n",
           in, m->gguf_version, m->name, m->layers, m->dim, m->heads, m->kv_heads, m->head_dim,
           m->ffn, m->vocab);
    break;
  case RT_IMPORT_EMBEDDINGS:
    printf("  embeddings   token_embd.weight %s -> model.embed_tokens.weight F16 [%" PRIu64
           ", %" PRIu64 "]\n", p->types, m->vocab, m->dim);
    break;
  case RT_IMPORT_LAYER:
    printf("  layer %3d/%" PRIu64 "   %d tensors (%s), q/k rows un-permuted\n", p->layer + 1,
           m->layers, p->ntensors, p->types);
    break;
  case RT_IMPORT_FINAL:
    printf("  final        model.norm.weight F32%s\n",
           m->tied ? "; lm_head tied to the embeddings" : ", lm_head.weight F16");
    break;
  }
}

/* DIR/tokenizer.txt beside the weights, where rabit run and ppl look first;
 * a note instead when the GGUF has no tokenizer. Returns an RB_ status. */
static int tokenizer_save(const RtImportResult *res, const char *outdir, int quiet, RbBuf *err) {
  if (res->ntokens < 0) {
    if (!quiet) printf("note: the GGUF has no tokenizer; rabit run and ppl will need --tokenizer\n");
    return RB_OK;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer.txt", outdir);
  int rc = rt_tok_save_vocab(res->gguf, path, err);
  if (rc == RB_OK && !quiet) printf("wrote %s (%lld tokens)\n", path, (long long)res->ntokens);
  return rc;
}

/* ---- the command ---- */

/* Contract (commands.h): 0 ok, 1 user error, 2 internal error; never exits. */
int cmd_import(int argc, char **argv) {
  const char *in = NULL, *outdir = NULL;
  int force = 0, quiet = 0;
  const ArgsOpt opts[] = {
      ARGS_OPT_STRING("-o", "--output", &outdir, "DIR", "output directory, created if missing"),
      ARGS_OPT_FLAG(NULL, "--force", &force,
                    "overwrite DIR/model.safetensors and DIR/config.json;\n"
                    "without it an existing file is an error and nothing is written"),
      ARGS_OPT_FLAG("-q", "--quiet", &quiet, "no progress output"),
      ARGS_OPT_HELP("-h", "--help", "this text"),
  };
  const ArgsSpec spec = {"rabit import", help_head, help_tail, 18, opts, ARGS_COUNT(opts), 1, "one input GGUF file"};
  int rc = args_parse(&spec, argc, argv, &in, NULL);
  if (rc != ARGS_GO) return rc;
  if (!in || !outdir) return args_missing(&spec, !in ? "an input GGUF file (MODEL.gguf)" : "-o DIR");
  if (paths_input("rabit import", NULL, in) || paths_output_dir("rabit import", "-o", outdir)) return 1;

  RbBuf err = {0};
  RtImportOptions o = {in, outdir, force, quiet ? NULL : print_progress, (void *)in};
  RtImportResult res;
  rc = rt_import_gguf(&o, &res, &err);
  if (rc == RB_OK) {
    if (!quiet)
      printf("wrote %s (%d tensors, %.1f MB) and %s\n", res.safetensors, res.ntensors,
             (double)res.bytes / 1e6, res.config);
    rc = tokenizer_save(&res, outdir, quiet, &err);
  }
  args_report("rabit import", err.data);
  if (err.oom) fputs("rabit import: out of memory\n", stderr);
  rt_import_result_free(&res);
  rb_buf_free(&err);
  return rc == RB_OK ? 0 : rc == RB_EUSER ? 1 : 2;
}
