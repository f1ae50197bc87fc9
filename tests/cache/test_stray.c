/* test_stray.c: things in the cache directory that we did not write. A
 * directory or a symlink with an entry's name is neither counted nor loaded;
 * clear removes the rest and names the directory it cannot remove. An
 * existing directory others can enter is tightened to 0700 when it is ours,
 * else a warning says so once per process. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

enum { HDR = 44 };

static int mode_of(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static void stray(const char *root) {
  char *dir = strdup(tu_path(root, "stray"));
  RtCache *c;
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  CHECK(rt_cache_put(c, tu_key("real"), "abcdef", 6, NULL) == RB_OK);
  /* A directory with an entry's name and a temp name, and a symlink with an
   * entry's name pointing at a valid entry elsewhere. */
  char *sdir = strdup(tu_entry_path(dir, tu_key("dir")));
  char *tdir = strdup(tu_path(dir, "tmp.leftover"));
  CHECK(mkdir(sdir, 0700) == 0 && mkdir(tdir, 0700) == 0);
  char *other = strdup(tu_path(root, "other"));
  RtCache *o;
  CHECK(rt_cache_open(&o, other, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  CHECK(rt_cache_put(o, tu_key("link"), "linked", 6, NULL) == RB_OK);
  rt_cache_close(o);
  CHECK(symlink(tu_entry_path(other, tu_key("link")), tu_entry_path(dir, tu_key("link"))) == 0);

  RtCacheStats st;
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.entries == 1 && st.bytes == HDR + 6);
  void *data;
  size_t len;
  CHECK(rt_cache_get(c, tu_key("dir"), &data, &len) == 0);
  CHECK(rt_cache_get(c, tu_key("link"), &data, &len) == 0); /* never through a link */
  CHECK(tu_exists(sdir));

  RtCacheCleared done;
  RbBuf err = {0};
  CHECK(rt_cache_clear(c, &done, &err) == RB_EUSER);
  CHECK(done.entries == 1 && done.bytes == HDR + 6 && done.failed == 2);
  char want[4400];
  snprintf(want, sizeof want, "kernel cache: cannot remove '%s': Is a directory\n", sdir);
  CHECK(err.data && strstr(err.data, want));
  snprintf(want, sizeof want, "kernel cache: cannot remove '%s': Is a directory\n", tdir);
  CHECK(err.data && strstr(err.data, want));
  if (!err.data || !strstr(err.data, want)) fprintf(stderr, "clear said: %s", err.data ? err.data : "(none)\n");
  /* The link itself went (it had our name); what it pointed at did not. */
  CHECK(tu_count(dir, NULL, NULL) == 2 && tu_exists(tu_entry_path(other, tu_key("link"))));
  rb_buf_free(&err);
  rt_cache_close(c);
  free(sdir);
  free(tdir);
  free(other);
  free(dir);
}

/* The many-failures tail: 8 named, then a count. */
static void many(const char *root) {
  char *dir = strdup(tu_path(root, "many"));
  RtCache *c;
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  for (int i = 0; i < 11; i++) {
    char src[8];
    snprintf(src, sizeof src, "d%d", i);
    CHECK(mkdir(tu_entry_path(dir, tu_key(src)), 0700) == 0);
  }
  RtCacheCleared done;
  RbBuf err = {0};
  CHECK(rt_cache_clear(c, &done, &err) == RB_EUSER && done.failed == 11 && done.entries == 0);
  int lines = 0;
  for (const char *p = err.data; p && (p = strchr(p, '\n')); p++) lines++;
  CHECK(lines == 9 && strstr(err.data, "kernel cache: and 3 more files that cannot be removed\n"));
  rb_buf_free(&err);
  rt_cache_close(c);
  free(dir);
}

/* In a child, so that the once-per-process warning starts unsaid. */
static int mode_checks(const char *root) {
  /* Ours at 0755: tightened, without a word. */
  char *mine = strdup(tu_path(root, "mine"));
  CHECK(mkdir(mine, 0755) == 0 && chmod(mine, 0755) == 0);
  RtCache *c;
  RbBuf warn = {0};
  CHECK(rt_cache_open(&c, mine, RT_CACHE_DEFAULT_MAX, &warn) == RB_OK && warn.len == 0);
  CHECK(mode_of(mine) == 0700);
  rt_cache_close(c);
  if (geteuid() != 0) {
    printf("SKIP cache_stray (not ours): not root, so no directory of another user's can be made\n");
    free(mine);
    return tu_failures ? 1 : 0;
  }
  /* Someone else's at 0755: left as it is, and said once. */
  char *theirs = strdup(tu_path(root, "theirs"));
  CHECK(mkdir(theirs, 0755) == 0 && chmod(theirs, 0755) == 0 && tu_nobody_own(theirs) == 0);
  CHECK(rt_cache_open(&c, theirs, RT_CACHE_DEFAULT_MAX, &warn) == RB_OK);
  char want[4400];
  snprintf(want, sizeof want,
           "warning: kernel cache directory '%s' has mode 0755 and belongs to uid 65534, not to you; other "
           "users can read its kernels\n",
           theirs);
  if (!warn.data || strcmp(warn.data, want)) fprintf(stderr, "warning was: %s", warn.data ? warn.data : "(none)\n");
  CHECK(warn.data && !strcmp(warn.data, want));
  CHECK(mode_of(theirs) == 0755);
  rt_cache_close(c);
  rb_buf_free(&warn);
  CHECK(chmod(theirs, 0777) == 0);
  CHECK(rt_cache_open(&c, theirs, RT_CACHE_DEFAULT_MAX, &warn) == RB_OK && warn.len == 0); /* once */
  rt_cache_close(c);
  rb_buf_free(&warn);
  free(mine);
  free(theirs);
  return tu_failures ? 1 : 0;
}

int main(void) {
  umask(022);
  char *root = tu_tmpdir("stray");
  stray(root);
  many(root);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) _exit(mode_checks(root));
  int st = 0;
  CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(tu_rm_rf(root) == 0);
  free(root);
  return tu_finish("cache_stray");
}
