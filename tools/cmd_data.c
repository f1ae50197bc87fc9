/* cmd_data.c: `rabit data prepare --tokenizer T --text FILE... -o DIR`: each
 * text tokenized into DIR/<name>.shard (trainer/data.c), one line per shard. */
#include <stdio.h>
#include <string.h>

#include "tools/args.h"
#include "tools/commands.h"
#include "tools/load.h"
#include "tools/paths.h"
#include "trainer/trainer.h"

#define MAX_TEXTS 256

static const char help_head[] =
    "usage: rabit data prepare --tokenizer T --text FILE [--text FILE...] -o DIR [--split train|heldout]\n"
    "\n"
    "Tokenize texts into token shards for rabit train: DIR/<name>.shard per text, with a\n"
    "header (version, split, token count, the text's SHA-256, a checksum). The same\n"
    "texts and tokenizer give the same bytes. rabit train refuses held-out shards.\n"
    "\n";
static const char help_tail[] =
    "\n"
    "T is the model's .gguf or the tokenizer.txt that rabit import writes.\n"
    "Exit status: 0 ok, 1 bad input or usage, 2 internal error.\n";

typedef struct {
  const char *v[MAX_TEXTS];
  int n;
} Texts;

/* --text may be given many times. */
static const char *add_text(const char *v, void *dest) {
  Texts *t = dest;
  if (t->n == MAX_TEXTS) return "at most 256 texts";
  t->v[t->n++] = v;
  return NULL;
}

static const char *parse_split(const char *v, void *dest) {
  static const char *const names[] = {"train", "heldout"};
  int i = args_pick(v, names, 2);
  if (i < 0) return "train or heldout";
  *(TrSplit *)dest = (TrSplit)i;
  return NULL;
}

static void progress(void *ctx, const char *text, const char *shard, const TrShard *s) {
  (void)ctx;
  printf("%s -> %s: %llu tokens (%s)\n", text, shard, (unsigned long long)s->ntokens, tr_split_name(s->split));
}

/* Contract (commands.h). */
int cmd_data(int argc, char **argv) {
  const char *tok_path = NULL, *dir = NULL, *verb = NULL;
  Texts texts = {{0}, 0};
  TrSplit split = TR_SPLIT_TRAIN;
  const ArgsOpt opts[] = {
      ARGS_OPT_STRING(NULL, "--tokenizer", &tok_path, "T", "the tokenizer (.gguf or tokenizer.txt)"),
      ARGS_OPT_CUSTOM(NULL, "--text", add_text, &texts, "FILE", "a source text (repeat for several)"),
      ARGS_OPT_STRING("-o", "--output", &dir, "DIR", "the shard directory, created if missing"),
      ARGS_OPT_CUSTOM(NULL, "--split", parse_split, &split, "S", "train (default) or heldout"),
      ARGS_OPT_HELP("-h", "--help", "this text"),
  };
  const ArgsSpec spec = {"rabit data", help_head, help_tail, 18, opts, ARGS_COUNT(opts), 1, "one verb (prepare)"};
  int rc = args_parse(&spec, argc, argv, &verb, NULL);
  if (rc != ARGS_GO) return rc;
  if (!verb) return args_missing(&spec, "a verb (prepare)");
  if (strcmp(verb, "prepare") != 0) {
    fprintf(stderr, "rabit data: unknown verb '%s' (the one verb is prepare; see rabit data --help)\n", verb);
    return 1;
  }
  if (!tok_path || !texts.n || !dir) {
    fprintf(stderr, "rabit data: prepare needs %s\n", !tok_path ? "--tokenizer" : !texts.n ? "--text" : "-o DIR");
    return 1;
  }
  for (int i = 0; i < texts.n; i++)
    if (paths_input("rabit data", "text", texts.v[i])) return 1;
  if (paths_output_dir("rabit data", "-o", dir)) return 1;
  RtTokenizer *tok = load_tokenizer(tok_path, NULL, "rabit data");
  if (!tok) return 1;
  RbBuf err = {0};
  TrDataOptions o = {tok, texts.v, texts.n, split, dir, progress, NULL};
  rc = tr_data_prepare(&o, &err);
  args_report("rabit data", err.data);
  rb_buf_free(&err);
  rt_tok_free(tok);
  return rc == RB_OK ? 0 : rc == RB_EUSER ? 1 : 2;
}
