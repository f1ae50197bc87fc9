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
/* Permission tests need a user the kernel holds to its modes: root ignores
 * them. Returns 0 when this process now runs as such a user (it already did,
 * or was root and became nobody, uid and gid 65534: call it in a child), -1
 * when it could not. tu_nobody_own chowns path (not recursively) to that
 * user when we are root, so the dropped child owns what it must. */
int tu_drop_root(void);
int tu_nobody_own(const char *path);
/* Runs fn(arg) in a child that has dropped root; returns its exit status, or
 * 77 after printing "SKIP <what>: ..." when privileges cannot be dropped. */
int tu_in_child_as_user(const char *what, int (*fn)(void *), void *arg);
/* Prints PASS/FAIL with the test name and returns the process exit code. */
int tu_finish(const char *name);

#endif
