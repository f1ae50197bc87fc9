/* util.c: see util.h. */
#define _GNU_SOURCE /* setresuid, setresgid */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int tu_failures;

char *tu_tmpdir(const char *tag) {
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  size_t n = strlen(base) + strlen(tag) + 32;
  char *p = malloc(n);
  snprintf(p, n, "%s/rabit-%s-XXXXXX", base, tag);
  if (!mkdtemp(p)) {
    perror("mkdtemp");
    exit(2);
  }
  return p;
}

int tu_rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
      size_t n = strlen(path) + strlen(de->d_name) + 2;
      char *child = malloc(n);
      snprintf(child, n, "%s/%s", path, de->d_name);
      if (tu_rm_rf(child) != 0) rc = -1;
      free(child);
    }
    closedir(d);
    return rmdir(path) == 0 ? rc : -1;
  }
  return unlink(path);
}

const char *tu_path(const char *a, const char *b) {
  static char bufs[8][4096];
  static int next;
  char *p = bufs[next++ % 8];
  snprintf(p, sizeof bufs[0], "%s/%s", a, b);
  return p;
}

int tu_count(const char *dir, const char *prefix, const char *suffix) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    const char *s = de->d_name;
    if (!strcmp(s, ".") || !strcmp(s, "..")) continue;
    size_t len = strlen(s);
    if (prefix && strncmp(s, prefix, strlen(prefix)) != 0) continue;
    if (suffix && (len < strlen(suffix) || strcmp(s + len - strlen(suffix), suffix) != 0)) continue;
    n++;
  }
  closedir(d);
  return n;
}

int tu_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

RtKey tu_key(const char *source) {
  RtKeyParts p = {source, "-opt", "sm_90", "nvrtc test", "0.0.0"};
  return rt_key_make(&p);
}

const char *tu_entry_path(const char *dir, RtKey key) {
  char name[64];
  rt_key_hex(key, name);
  strcat(name, ".cubin");
  return tu_path(dir, name);
}

int tu_set_mtime(const char *path, long delta) {
  struct timespec ts[2];
  clock_gettime(CLOCK_REALTIME, &ts[0]);
  ts[0].tv_sec += delta;
  ts[1] = ts[0];
  return utimensat(AT_FDCWD, path, ts, 0);
}

int tu_finish(const char *name) {
  if (tu_failures) {
    printf("FAIL %s: %d check(s) failed\n", name, tu_failures);
    return 1;
  }
  printf("PASS %s\n", name);
  return 0;
}

enum { NOBODY = 65534 };

int tu_drop_root(void) {
  if (geteuid() != 0) return 0;
  if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
      setresuid(NOBODY, NOBODY, NOBODY) != 0)
    return -1;
  return geteuid() == 0 ? -1 : 0;
}

int tu_nobody_own(const char *path) { return geteuid() == 0 ? chown(path, NOBODY, NOBODY) : 0; }

int tu_in_child_as_user(const char *what, int (*fn)(void *), void *arg) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return 2;
  if (pid == 0) {
    if (tu_drop_root() != 0) {
      printf("SKIP %s: running as root and cannot become uid %d, so modes are not enforced\n", what, NOBODY);
      fflush(stdout);
      _exit(77);
    }
    int rc = fn(arg);
    fflush(stdout);
    fflush(stderr);
    _exit(rc);
  }
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return 2;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}
