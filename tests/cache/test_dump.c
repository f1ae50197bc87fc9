/* test_dump.c: the sources of kernels that fail to build go into a private
 * directory made by mkdtemp under $TMPDIR (mode 0700), with files created
 * O_EXCL|O_NOFOLLOW: a link planted at the old predictable path, or at the
 * file's own name inside, is never followed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

static char victim_text[] = "precious\n";

static int read_is(const char *path, const char *want) {
  RbBuf b = {0};
  int ok = rb_read_file(path, &b) == 0 && b.len == strlen(want) && !memcmp(b.data, want, b.len);
  rb_buf_free(&b);
  return ok;
}

int main(void) {
  char *tmp = tu_tmpdir("dump");
  char *victim = strdup(tu_path(tmp, "victim"));
  FILE *f = fopen(victim, "w");
  CHECK(f && fputs(victim_text, f) >= 0 && fclose(f) == 0);
  /* The old dump path: $TMPDIR/<entry>.cu. A link there must stay unused. */
  CHECK(symlink(victim, tu_path(tmp, "rb_k.cu")) == 0);

  /* $TMPDIR that does not exist: the reason, named (in a child: the
   * directory is made once per process). */
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("TMPDIR", tu_path(tmp, "nonexistent"), 1);
    RbBuf err = {0};
    char path[4096];
    int fd = rt_dump_create("rb_k.cu", path, sizeof path, &err);
    char want[4400];
    snprintf(want, sizeof want, "cannot make a private directory '%s/rabit-kernels-XXXXXX': No such file or directory\n",
             tu_path(tmp, "nonexistent"));
    if (fd >= 0 || !err.data || strcmp(err.data, want)) {
      fprintf(stderr, "got: %s", err.data ? err.data : "(none)\n");
      _exit(1);
    }
    _exit(0);
  }
  int st = 0;
  CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);

  setenv("TMPDIR", tmp, 1);
  RbBuf err = {0};
  char path[4096], dir[4096];
  int fd = rt_dump_create("rb_k.cu", path, sizeof path, &err);
  CHECK(fd >= 0 && err.len == 0);
  CHECK(write(fd, "src\n", 4) == 4 && close(fd) == 0);
  /* <TMPDIR>/rabit-kernels-XXXXXX/rb_k.cu, a private directory of ours */
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  char head[4200];
  snprintf(head, sizeof head, "%s/rabit-kernels-", tmp);
  CHECK(!strncmp(dir, head, strlen(head)) && strlen(dir) == strlen(head) + 6);
  struct stat ds, fs;
  CHECK(lstat(dir, &ds) == 0 && S_ISDIR(ds.st_mode) && (ds.st_mode & 0777) == 0700 && ds.st_uid == geteuid());
  CHECK(lstat(path, &fs) == 0 && S_ISREG(fs.st_mode) && (fs.st_mode & 0777) == 0600);
  CHECK(read_is(path, "src\n") && read_is(victim, victim_text));

  /* The same name again, or a link planted under a name: refused, not followed. */
  rb_buf_free(&err);
  CHECK(rt_dump_create("rb_k.cu", path, sizeof path, &err) < 0 && errno == EEXIST);
  CHECK(err.data && strstr(err.data, "rb_k.cu': File exists\n"));
  CHECK(symlink(victim, tu_path(dir, "rb_planted.cu")) == 0);
  rb_buf_free(&err);
  CHECK(rt_dump_create("rb_planted.cu", path, sizeof path, &err) < 0);
  CHECK(read_is(victim, victim_text));
  /* A second kernel goes into the same directory. */
  fd = rt_dump_create("rb_other.cu", path, sizeof path, NULL);
  CHECK(fd >= 0 && !strncmp(path, dir, strlen(dir)) && path[strlen(dir)] == '/');
  if (fd >= 0) close(fd);
  /* A name is a name, not a path. */
  rb_buf_free(&err);
  CHECK(rt_dump_create("../escape.cu", path, sizeof path, &err) < 0 && err.data && strstr(err.data, "bad"));
  CHECK(!tu_exists(tu_path(tmp, "escape.cu")));
  rb_buf_free(&err);

  CHECK(tu_rm_rf(tmp) == 0);
  free(victim);
  free(tmp);
  return tu_finish("cache_dump");
}
