/* util.h: helpers shared by the kernel cache tests: a CHECK that reports
 * file:line and counts failures, fresh temp directories, and file probes. */
#ifndef RABIT_CACHE_TEST_UTIL_H
#define RABIT_CACHE_TEST_UTIL_H

#include <stddef.h>
#include <stdio.h>

#include "runtime/jit/jit.h"

extern int tu_failures;

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
      tu_failures++;                                                             \
    }                                                                            \
  } while (0)

/* A fresh directory from mkdtemp under $TMPDIR (or /tmp); exits on failure. */
char *tu_tmpdir(const char *tag);
/* rm -r of path; returns 0 on success. */
int tu_rm_rf(const char *path);
/* "<a>/<b>" in a static rotating buffer (8 slots). */
const char *tu_path(const char *a, const char *b);
/* Number of directory entries (excluding . and ..) whose name starts with
 * prefix (NULL: all) and ends with suffix (NULL: any). */
int tu_count(const char *dir, const char *prefix, const char *suffix);
int tu_exists(const char *path);
/* A key from a short string, for tests that need distinct keys. */
RtKey tu_key(const char *source);
/* Path of the entry file for key. */
const char *tu_entry_path(const char *dir, RtKey key);
/* Sets the mtime of path to now + delta seconds. */
int tu_set_mtime(const char *path, long delta);
/* Prints PASS/FAIL with the test name and returns the process exit code. */
int tu_finish(const char *name);

#endif
