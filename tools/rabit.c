/* rabit: the runtime driver. Dispatches to one subcommand per file
 * (tools/cmd_*.c): import, quantize, run, ppl, bench, data, eval, train. */
#include <stdio.h>
#include <string.h>

#include "tools/commands.h"

typedef struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *help;
} Command;

static const Command commands[] = {
    {"import", cmd_import, "convert a GGUF model to safetensors + config.json"},
    {"quantize", cmd_quantize, "post-training quantization to k residual binary paths"},
    {"run", cmd_run, "generate text from a prompt"},
    {"ppl", cmd_ppl, "perplexity on a text file"},
    {"bench", cmd_bench, "prefill and decode speed, 2-bit and fp16"},
    {"data", cmd_data, "tokenize texts into token shards for training"},
    {"eval", cmd_eval, "validation and test perplexity on the held-out split"},
    {"train", cmd_train, "RaBiT quantization-aware training on the GPU"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: rabit COMMAND [options]   (rabit COMMAND --help for each)\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2;
  }
  if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
    printf("rabit %s\n", RABIT_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "rabit: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 1;
}
