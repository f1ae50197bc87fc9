/* test_put_error.c: failed writes name the file and the reason, leave no
 * partial entry and no temp file; a fetch whose put fails still returns the
 * kernel, and a full disk is said once per process, not once per kernel;
 * allocation failures never load or destroy a good entry. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

static int build(void *ctx, void **data, size_t *len) {
  (*(int *)ctx)++;
  *data = rb_malloc(5);
  memcpy(*data, "cubin", 5);
  *len = 5;
  return RB_OK;
}

static int failing_build(void *ctx, void **data, size_t *len) { return RB_EUSER; }

static int big_build(void *ctx, void **data, size_t *len) { /* larger than the file-size limit below */
  (*(int *)ctx)++;
  *data = rb_calloc(1, 1000);
  *len = 1000;
  return RB_OK;
}

/* In a child: a file-size limit makes write() fail with EFBIG part way, as a
 * full disk would with ENOSPC. Exits 0 when everything checked out. */
static int write_fails(const char *dir) {
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl = {100, 100};
  if (setrlimit(RLIMIT_FSIZE, &rl) != 0) return 20;
  RtCache *c;
  if (rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) != RB_OK) return 21;
  static char blob[1000];
  RbBuf err = {0};
  int rc = 0;
  if (rt_cache_put(c, tu_key("big"), blob, sizeof blob, &err) != RB_EINTERNAL) rc = 22;
  char want[4200];
  snprintf(want, sizeof want, "kernel cache: cannot write '%s/tmp.", dir);
  if (!err.data || strstr(err.data, want) != err.data || !strstr(err.data, "File too large"))
    rc = 23;
  if (rc) fprintf(stderr, "err: %s\n", err.data ? err.data : "(none)");
  if (tu_count(dir, NULL, NULL) != 0) rc = 24; /* no temp, no entry */
  rb_buf_free(&err);
  /* A full disk fails every kernel's store alike: fetch says it once, for
   * the first, and still hands back every kernel. */
  int said = 0, builds = 0;
  for (int i = 0; i < 4; i++) {
    char src[8];
    snprintf(src, sizeof src, "f%d", i);
    RbBuf e = {0};
    void *data = NULL;
    size_t len = 0;
    int hit = -1;
    if (rt_cache_fetch(c, tu_key(src), big_build, &builds, &data, &len, &hit, &e) != RB_OK || hit || len != 1000)
      rc = 25;
    if (e.len) {
      said++;
      if (strncmp(e.data, "kernel cache: cannot write '", 28) ||
          !strstr(e.data, "': File too large (kernels not stored are rebuilt next time; further failures to "
                          "store are not reported)\n") || strchr(e.data, '\n') != e.data + e.len - 1)
        rc = 26;
      if (i != 0) rc = 27;
    }
    if (rc) fprintf(stderr, "fetch %d said: %s", i, e.data ? e.data : "(nothing)\n");
    rb_free(data);
    rb_buf_free(&e);
  }
  if (said != 1 || builds != 4) rc = 28;
  if (tu_count(dir, NULL, ".cubin") != 0 || tu_count(dir, "tmp.", NULL) != 0) rc = 29;
  rt_cache_close(c);
  return rc;
}

int main(void) {
  char *root = tu_tmpdir("puterr");
  char *dir = strdup(tu_path(root, "cache"));

  /* Write failure mid-file. */
  RtCache *c;
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  rt_cache_close(c);
  pid_t pid = fork();
  if (pid == 0) _exit(write_fails(dir));
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status)) fprintf(stderr, "child status 0x%x\n", status);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  /* The directory vanishes under an open cache. */
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  CHECK(tu_rm_rf(dir) == 0);
  RbBuf err = {0};
  CHECK(rt_cache_put(c, tu_key("x"), "abc", 3, &err) == RB_EINTERNAL);
  char want[4200];
  snprintf(want, sizeof want, "kernel cache: cannot create '%s/tmp.", dir);
  CHECK(err.data && strstr(err.data, want) == err.data);
  CHECK(err.data && strstr(err.data, ": No such file or directory\n"));

  /* fetch still hands back the kernel; the cache failure is only a message. */
  rb_buf_free(&err);
  int builds = 0, hit = -1;
  void *data = NULL;
  size_t len = 0;
  CHECK(rt_cache_fetch(c, tu_key("x"), build, &builds, &data, &len, &hit, &err) == RB_OK);
  CHECK(builds == 1 && hit == 0 && len == 5 && data && memcmp(data, "cubin", 5) == 0);
  CHECK(err.len > 0);
  rb_free(data);
  rb_buf_free(&err);
  rt_cache_close(c);

  /* A failing build's code comes back and nothing is stored. */
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  CHECK(rt_cache_fetch(c, tu_key("y"), failing_build, NULL, &data, &len, &hit, &err) == RB_EUSER);
  CHECK(tu_count(dir, NULL, ".cubin") == 0);

  /* Allocation failure at every step of get and put: never a wrong hit,
   * never a lost entry, never a leftover temp file. */
  RtKey k = tu_key("alloc");
  CHECK(rt_cache_put(c, k, "payload", 7, NULL) == RB_OK);
  for (long n = 0; n < 8; n++) {
    rb_alloc_fail_after = n;
    int got = rt_cache_get(c, k, &data, &len);
    rb_alloc_fail_after = -1;
    CHECK(!got || (len == 7 && memcmp(data, "payload", 7) == 0));
    if (got) rb_free(data);
    CHECK(tu_exists(tu_entry_path(dir, k)));
  }
  for (long n = 0; n < 8; n++) {
    rb_alloc_fail_after = n;
    int rc = rt_cache_put(c, tu_key("alloc2"), "p2", 2, NULL);
    rb_alloc_fail_after = -1;
    CHECK(rc == RB_OK || rc == RB_EINTERNAL);
    CHECK(tu_count(dir, "tmp.", NULL) == 0);
  }
  rt_cache_close(c);
  rb_alloc_fail_after = 0;
  c = (RtCache *)1;
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) == RB_EINTERNAL && c == NULL);
  rb_alloc_fail_after = -1;

  rb_buf_free(&err);
  CHECK(tu_rm_rf(root) == 0);
  free(dir);
  free(root);
  return tu_finish("cache_put_error");
}
