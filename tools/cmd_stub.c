/* cmd_stub.c: placeholders for the subcommands still being written; each
 * says so plainly and fails, so nothing pretends to work. Remove an entry
 * when its cmd_<name>.c lands. */
#include <stdio.h>

#include "tools/commands.h"

static int not_yet(const char *name) {
  fprintf(stderr, "rabit %s: not implemented yet\n", name);
  return 2;
}

#define STUB(name) __attribute__((weak)) int cmd_##name(int argc, char **argv) { (void)argc; (void)argv; return not_yet(#name); }
STUB(import)
STUB(quantize)
