/* paths.c: see paths.h. The checks run before a command's work, so that a
 * typo in -o costs nothing; the writes themselves still report their own
 * errors (a disk that fills up, a directory removed meanwhile). */
#include "tools/paths.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/ir.h"

int paths_input(const char *tool, const char *what, const char *path) {
  struct stat st;
  const char *sp = what ? " " : "";
  if (!strcmp(path, "-")) return 0;
  if (stat(path, &st) != 0 || access(path, R_OK) != 0) {
    fprintf(stderr, "%s: cannot read %s%s'%s': %s\n", tool, what ? what : "", sp, path, strerror(errno));
    return 1;
  }
  if (S_ISDIR(st.st_mode)) {
    fprintf(stderr, "%s: cannot read %s%s'%s': it is a directory\n", tool, what ? what : "", sp, path);
    return 1;
  }
  return 0;
}

/* The directory part of path ("." for a bare name, "/" for "/x"). */
static void dir_of(const char *path, char *dir, size_t n) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, n, ".");
  else snprintf(dir, n, "%.*s", slash == path ? 1 : (int)(slash - path), path);
}

/* special: an existing device or pipe may stand for the file (an fopen'd stream). */
static int output_check(const char *tool, const char *opt, const char *path, const char *example, int special) {
  struct stat st;
  char dir[4096];
  size_t len = strlen(path);
  if (len && path[len - 1] == '/') {
    fprintf(stderr, "%s: %s '%s' names a directory; it takes a file name\n", tool, opt, path);
    return 1;
  }
  if (stat(path, &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      fprintf(stderr, "%s: %s '%s' is a directory; it takes a file name", tool, opt, path);
      if (example) fprintf(stderr, " (such as '%s/%s')", path, example);
      fputc('\n', stderr);
      return 1;
    }
    if (special && !S_ISREG(st.st_mode)) return 0; /* /dev/null, /dev/stdout */
    if (!S_ISREG(st.st_mode)) { /* the write renames over it: never over a device */
      fprintf(stderr, "%s: %s '%s' exists and is not a regular file\n", tool, opt, path);
      return 1;
    }
  }
  dir_of(path, dir, sizeof dir);
  if (stat(dir, &st) != 0) {
    fprintf(stderr, "%s: cannot write '%s': directory '%s': %s\n", tool, path, dir, strerror(errno));
    return 1;
  }
  if (!S_ISDIR(st.st_mode)) {
    fprintf(stderr, "%s: cannot write '%s': '%s' is not a directory\n", tool, path, dir);
    return 1;
  }
  if (access(dir, W_OK | X_OK) != 0) {
    fprintf(stderr, "%s: cannot write '%s': directory '%s': %s\n", tool, path, dir, strerror(errno));
    return 1;
  }
  return 0;
}

int paths_output_file(const char *tool, const char *opt, const char *path, const char *example) {
  return output_check(tool, opt, path, example, 0);
}

int paths_output_stream(const char *tool, const char *opt, const char *path) {
  return output_check(tool, opt, path, NULL, 1);
}

int paths_output_dir(const char *tool, const char *opt, const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "%s: %s '%s' exists and is not a directory\n", tool, opt, path);
    return 1;
  }
  if (rb_mkdir_p(path, 0755) != 0) {
    fprintf(stderr, "%s: cannot create directory '%s': %s\n", tool, path, strerror(errno));
    return 1;
  }
  if (access(path, W_OK | X_OK) != 0) {
    fprintf(stderr, "%s: cannot write in directory '%s': %s\n", tool, path, strerror(errno));
    return 1;
  }
  return 0;
}

int paths_same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int paths_is_gguf(const char *path) {
  char magic[4];
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t n = fread(magic, 1, sizeof magic, f);
  fclose(f);
  return n == sizeof magic && !memcmp(magic, "GGUF", 4);
}
