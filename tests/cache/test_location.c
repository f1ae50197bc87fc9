/* test_location.c: the directory comes from the argument, else
 * $RABIT_CACHE_DIR, else $XDG_CACHE_HOME/rabit, else $HOME/.cache/rabit, and
 * is created (with parents) mode 0700; rt_cache_dir names the same one. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

static char *root;

/* Opens with dir, checks the directory used is want and is a 0700 dir. */
static void expect(const char *dir, const char *want) {
  RtCache *c = NULL;
  RbBuf warn = {0};
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, &warn) == RB_OK && c);
  CHECK(warn.len == 0);
  RtCacheStats st;
  CHECK(c && rt_cache_stats(c, &st) == RB_OK);
  if (!c || !st.dir || strcmp(st.dir, want) != 0)
    fprintf(stderr, "dir %s, want %s\n", c && st.dir ? st.dir : "(null)", want);
  CHECK(c && st.dir && strcmp(st.dir, want) == 0);
  /* rt_cache_dir names the same directory when no argument overrides it. */
  char *named = NULL;
  if (!dir) CHECK(rt_cache_dir(&named) == RB_OK && named && strcmp(named, want) == 0);
  rb_free(named);
  struct stat s;
  CHECK(stat(want, &s) == 0 && S_ISDIR(s.st_mode) && (s.st_mode & 0777) == 0700);
  rt_cache_close(c);
  rb_buf_free(&warn);
}

static const char *at(const char *rel) { return tu_path(root, rel); }

int main(void) {
  umask(022); /* the 0700 must come from the code, not the umask */
  root = tu_tmpdir("loc");
  unsetenv("RABIT_CACHE_DIR");
  unsetenv("XDG_CACHE_HOME");

  setenv("HOME", at("home"), 1);
  expect(NULL, at("home/.cache/rabit"));
  struct stat s;
  CHECK(stat(at("home/.cache"), &s) == 0 && (s.st_mode & 0777) == 0700);

  setenv("XDG_CACHE_HOME", "relative/ignored", 1);
  expect(NULL, at("home/.cache/rabit"));
  setenv("XDG_CACHE_HOME", at("xdg"), 1);
  expect(NULL, at("xdg/rabit"));

  setenv("RABIT_CACHE_DIR", "", 1); /* empty: ignored */
  expect(NULL, at("xdg/rabit"));
  setenv("RABIT_CACHE_DIR", at("env/a/b"), 1);
  expect(NULL, at("env/a/b"));
  CHECK(stat(at("env/a"), &s) == 0 && (s.st_mode & 0777) == 0700);

  expect(at("arg"), at("arg"));
  expect(at("arg/"), at("arg/")); /* a trailing slash is fine */

  /* Nothing set: memory only, said so. */
  unsetenv("RABIT_CACHE_DIR");
  unsetenv("XDG_CACHE_HOME");
  unsetenv("HOME");
  RtCache *c = NULL;
  RbBuf warn = {0};
  CHECK(rt_cache_open(&c, NULL, RT_CACHE_DEFAULT_MAX, &warn) == RB_OK && c);
  CHECK(warn.data && strstr(warn.data, "warning: no kernel cache directory") == warn.data &&
        strstr(warn.data, "caching in memory only\n"));
  RtCacheStats st;
  CHECK(c && rt_cache_stats(c, &st) == RB_OK && st.dir == NULL);
  char *none = (char *)"unset";
  CHECK(rt_cache_dir(&none) == RB_EUSER && none == NULL);
  rt_cache_close(c);
  rb_buf_free(&warn);

  CHECK(tu_rm_rf(root) == 0);
  free(root);
  return tu_finish("cache_location");
}
