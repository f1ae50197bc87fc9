/* args.h: the command-line parser of rabitc and of every rabit subcommand.
 * A command describes its options in a table (names, kind, destination,
 * help line); args_parse reads argv against it, left to right, and
 * args_help prints the --help text from it.
 *
 * Accepted forms: "--name value" and "--name=value" (short names too: "-n 5",
 * "-n=5"); a flag takes no value. Anything else that starts with '-' (but
 * is not "-" alone) is an unknown option; the rest are the positional
 * arguments, collected in order, up to a maximum.
 *
 * Every error is one line on stderr that names the command and the option
 * as typed, and args_parse returns 1 (the exit status of a usage error):
 *   rabit run: -n needs an integer 0..1000000, got 'abc'
 *   rabit run: --top-p needs a number in (0, 1], got '2'
 *   rabit bench: --ctx needs a value
 *   rabit ppl: unknown option '--foo' (see rabit ppl --help) */
#ifndef RABIT_TOOLS_ARGS_H
#define RABIT_TOOLS_ARGS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
  ARGS_FLAG,   /* no value: sets the int at dest to 1 */
  ARGS_STRING, /* a non-empty value: the const char * at dest points into argv */
  ARGS_TEXT,   /* any value, "" too (a prompt) */
  ARGS_INT,    /* a decimal integer in lo..hi: the int at dest */
  ARGS_FLOAT,  /* a finite number in the range lo, hi (ends excluded by open): the float at dest */
  ARGS_U64,    /* a decimal integer 0..2^64-1: the uint64_t at dest */
  ARGS_CUSTOM, /* parse(value, dest) */
  ARGS_HELP,   /* no value: prints the help to stdout; args_parse returns 0 */
} ArgsKind;

/* ARGS_FLOAT: which ends of [lo, hi] are excluded. */
enum { ARGS_CLOSED = 0, ARGS_OPEN_LO = 1, ARGS_OPEN_HI = 2 };

/* A custom option: store what value means at dest and return NULL, or return
 * what the option needs ("plan or cuda"), for the line
 * "CMD: OPT needs WHAT, got 'VALUE'". */
typedef const char *(*ArgsParseFn)(const char *value, void *dest);

typedef struct {
  const char *shrt, *lng; /* "-o" and "--output"; either may be NULL */
  ArgsKind kind;
  void *dest;
  const char *metavar;    /* the value in the help ("-n N"); a leading '=' is kept
                           * against the name ("--emit=plan|cuda"); NULL for flags */
  const char *help;       /* its help, '\n' between lines; NULL: not listed */
  double lo, hi;          /* ARGS_INT, ARGS_FLOAT: the range (hi may be INFINITY for floats) */
  unsigned open;          /* ARGS_FLOAT: ARGS_OPEN_LO | ARGS_OPEN_HI */
  ArgsParseFn parse;      /* ARGS_CUSTOM */
} ArgsOpt;

/* The table rows, one constructor a kind. */
#define ARGS_OPT_FLAG(s, l, dest, help) {s, l, ARGS_FLAG, dest, NULL, help, .parse = NULL}
#define ARGS_OPT_HELP(s, l, help) {s, l, ARGS_HELP, NULL, NULL, help, .parse = NULL}
#define ARGS_OPT_STRING(s, l, dest, meta, help) {s, l, ARGS_STRING, dest, meta, help, .parse = NULL}
#define ARGS_OPT_TEXT(s, l, dest, meta, help) {s, l, ARGS_TEXT, dest, meta, help, .parse = NULL}
#define ARGS_OPT_INT(s, l, dest, meta, lo_, hi_, help) {s, l, ARGS_INT, dest, meta, help, .lo = lo_, .hi = hi_}
#define ARGS_OPT_FLOAT(s, l, dest, meta, lo_, hi_, open_, help) \
  {s, l, ARGS_FLOAT, dest, meta, help, .lo = lo_, .hi = hi_, .open = open_}
#define ARGS_OPT_U64(s, l, dest, meta, help) {s, l, ARGS_U64, dest, meta, help, .parse = NULL}
#define ARGS_OPT_CUSTOM(s, l, fn, dest, meta, help) {s, l, ARGS_CUSTOM, dest, meta, help, .parse = fn}

typedef struct {
  const char *cmd;        /* "rabit run": begins every message */
  const char *head;       /* the help before the options (the usage line, ...) */
  const char *tail;       /* the help after them; may be NULL */
  int width;              /* the option column of the help: names and value, padded */
  const ArgsOpt *opts;
  int nopts;
  int max_pos;            /* positional arguments allowed */
  const char *pos_what;   /* for one too many: "one model" gives "CMD: one model, got 'X' too" */
} ArgsSpec;

#define ARGS_COUNT(a) ((int)(sizeof(a) / sizeof(a)[0]))

/* What args_parse returns when the command is to go on. */
#define ARGS_GO (-1)

/* Parse argv[1..argc-1] against s: each option's value goes to its dest,
 * the positional arguments to pos[0..*npos-1] (pos holds s->max_pos; npos
 * may be NULL, where the unset entries of pos tell).
 * Returns ARGS_GO, or the exit status the command returns at once: 0 after
 * the help, 1 after an error line. */
int args_parse(const ArgsSpec *s, int argc, char **argv, const char **pos, int *npos);

/* The help: s->head, one line (or more) per listed option, s->tail. */
void args_help(const ArgsSpec *s, FILE *f);
/* A usage error that no option names (a required argument is missing):
 * "CMD: needs WHAT" and the usage line(s) of s->head (up to its first blank
 * line) on stderr; returns 1, the exit status:
 *   rabit run: needs --weights W (or --random-weights)
 *   usage: rabit run MODEL.ir --weights W.safetensors --prompt TEXT [options] */
int args_missing(const ArgsSpec *s, const char *what);

/* A library's error message for the user, on stderr: each line of msg (the
 * messages end in '\n' or not, and may hold several lines) as
 * "CMD: LINE\n", where a line that already begins with "CMD: " keeps it. */
void args_report(const char *cmd, const char *msg);

/* For custom options. The index of value in names[0..n-1], else -1. */
int args_pick(const char *value, const char *const *names, int n);
/* Decimal integers separated by commas or spaces, each in lo..hi, at least one; stores at
 * most max of them in out (out may be NULL) and returns how many there are,
 * or -1 when s is not such a list or has more than max. */
int args_ints(const char *s, long lo, long hi, int *out, int max);

#endif
