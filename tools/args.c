/* args.c: see args.h. */
#include "tools/args.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The option named by arg's first n characters (its short or its long name). */
static const ArgsOpt *find(const ArgsSpec *s, const char *arg, size_t n) {
  for (int i = 0; i < s->nopts; i++) {
    const ArgsOpt *o = &s->opts[i];
    if ((o->shrt && strlen(o->shrt) == n && !strncmp(arg, o->shrt, n)) ||
        (o->lng && strlen(o->lng) == n && !strncmp(arg, o->lng, n)))
      return o;
  }
  return NULL;
}

/* A decimal integer in lo..hi, the whole of v; 0 on success. */
static int to_long(const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long k = strtol(v, &end, 10);
  if (!*v || isspace((unsigned char)*v) || *end || errno || k < lo || k > hi) return -1;
  *out = k;
  return 0;
}

/* "an integer 0..10", "a number in (0, 1]", "a number >= 0": what a numeric option needs. */
static void describe(const ArgsOpt *o, char *s, size_t n) {
  if (o->kind == ARGS_INT) snprintf(s, n, "an integer %ld..%ld", (long)o->lo, (long)o->hi);
  else if (o->kind == ARGS_U64) snprintf(s, n, "an integer 0..%" PRIu64, UINT64_MAX);
  else if (isinf(o->hi)) snprintf(s, n, "a number %s %g", o->open & ARGS_OPEN_LO ? ">" : ">=", o->lo);
  else
    snprintf(s, n, "a number in %c%g, %g%c", o->open & ARGS_OPEN_LO ? '(' : '[', o->lo, o->hi,
             o->open & ARGS_OPEN_HI ? ')' : ']');
}

/* Store v at o's destination; NULL on success, else what the option needs. */
static const char *store(const ArgsOpt *o, const char *v, char *need, size_t n) {
  switch (o->kind) {
  case ARGS_STRING:
    if (!*v) return "a non-empty value";
    /* fall through */
  case ARGS_TEXT:
    *(const char **)o->dest = v;
    return NULL;
  case ARGS_INT: {
    long k;
    if (to_long(v, (long)o->lo, (long)o->hi, &k) == 0) {
      *(int *)o->dest = (int)k;
      return NULL;
    }
    break;
  }
  case ARGS_FLOAT: {
    char *end;
    double x = strtod(v, &end);
    int lo_ok = o->open & ARGS_OPEN_LO ? x > o->lo : x >= o->lo;
    int hi_ok = o->open & ARGS_OPEN_HI ? x < o->hi : x <= o->hi;
    if (*v && !isspace((unsigned char)*v) && !*end && isfinite(x) && lo_ok && hi_ok) {
      *(float *)o->dest = (float)x;
      return NULL;
    }
    break;
  }
  case ARGS_U64: {
    char *end;
    errno = 0;
    unsigned long long k = isdigit((unsigned char)*v) ? strtoull(v, &end, 10) : 0;
    if (isdigit((unsigned char)*v) && !*end && !errno) {
      *(uint64_t *)o->dest = (uint64_t)k;
      return NULL;
    }
    break;
  }
  case ARGS_CUSTOM:
    return o->parse(v, o->dest);
  case ARGS_FLAG:
  case ARGS_HELP:
    break;
  }
  describe(o, need, n);
  return need;
}

int args_parse(const ArgsSpec *s, int argc, char **argv, const char **pos, int *npos) {
  int n_pos = 0;
  if (npos) *npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || !a[1]) { /* a positional argument ("-" is one: stdin) */
      if (n_pos == s->max_pos) {
        fprintf(stderr, "%s: %s, got '%s' too\n", s->cmd, s->pos_what, a);
        return 1;
      }
      pos[n_pos++] = a;
      if (npos) *npos = n_pos;
      continue;
    }
    const char *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    const ArgsOpt *o = find(s, a, n);
    if (!o) {
      fprintf(stderr, "%s: unknown option '%s' (see %s --help)\n", s->cmd, a, s->cmd);
      return 1;
    }
    if (o->kind == ARGS_FLAG || o->kind == ARGS_HELP) {
      if (eq) {
        fprintf(stderr, "%s: %.*s takes no value, got '%s'\n", s->cmd, (int)n, a, eq + 1);
        return 1;
      }
      if (o->kind == ARGS_HELP) {
        args_help(s, stdout);
        return 0;
      }
      *(int *)o->dest = 1;
      continue;
    }
    if (!eq && i + 1 >= argc) {
      fprintf(stderr, "%s: %s needs a value\n", s->cmd, a);
      return 1;
    }
    const char *v = eq ? eq + 1 : argv[++i];
    char need[96];
    const char *why = store(o, v, need, sizeof need);
    if (why) {
      fprintf(stderr, "%s: %.*s needs %s, got '%s'\n", s->cmd, (int)n, a, why, v);
      return 1;
    }
  }
  return ARGS_GO;
}

void args_help(const ArgsSpec *s, FILE *f) {
  fputs(s->head, f);
  for (int i = 0; i < s->nopts; i++) {
    const ArgsOpt *o = &s->opts[i];
    if (!o->help) continue;
    const char *meta = o->metavar;
    int w = fprintf(f, "  %s%s%s%s%s", o->shrt ? o->shrt : "", o->shrt && o->lng ? ", " : "",
                    o->lng ? o->lng : "", meta && *meta != '=' ? " " : "", meta ? meta : "");
    fprintf(f, "%*s", w < s->width + 2 ? s->width + 2 - w : 1, "");
    for (const char *l = o->help; *l;) { /* each further line under the first */
      size_t len = strcspn(l, "\n");
      fprintf(f, "%.*s\n", (int)len, l);
      l += len;
      if (*l && *++l) fprintf(f, "%*s", s->width + 2, "");
    }
  }
  if (s->tail) fputs(s->tail, f);
}

int args_missing(const ArgsSpec *s, const char *what) {
  const char *blank = strstr(s->head, "\n\n");
  fprintf(stderr, "%s: needs %s\n%.*s", s->cmd, what, blank ? (int)(blank - s->head + 1) : (int)strlen(s->head),
          s->head);
  return 1;
}

void args_report(const char *cmd, const char *msg) {
  size_t c = strlen(cmd);
  while (msg && *msg) {
    size_t len = strcspn(msg, "\n");
    int has = len > c + 1 && !strncmp(msg, cmd, c) && msg[c] == ':' && msg[c + 1] == ' ';
    fprintf(stderr, "%s%s%.*s\n", has ? "" : cmd, has ? "" : ": ", (int)len, msg);
    msg += len + (msg[len] == '\n');
  }
}

int args_pick(const char *value, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (names[i] && !strcmp(value, names[i])) return i;
  return -1;
}

int args_ints(const char *s, long lo, long hi, int *out, int max) {
  int n = 0;
  const char *sep = ", \t\n";
  s += strspn(s, " \t\n");
  for (;;) {
    char item[32];
    size_t len = strcspn(s, sep);
    long k;
    if (len == 0 || len >= sizeof item || n == max) return -1;
    memcpy(item, s, len);
    item[len] = 0;
    if (to_long(item, lo, hi, &k)) return -1;
    if (out) out[n] = (int)k;
    n++;
    s += len;
    s += strspn(s, " \t\n"); /* "1, 2" and "1 2" as well as "1,2" */
    if (*s == ',') s += 1 + strspn(s + 1, " \t\n");
    else if (!*s) return n;
  }
}
