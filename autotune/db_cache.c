/* db_cache.c: the tuning database kept in the kernel cache directory. It is
 * a cache too: one that is corrupted, truncated or of another format version
 * is said once and ignored (compiles fall back to the defaults), never fatal;
 * writers change it under a lock, so concurrent tunes and imports keep each
 * other's records. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "autotune/autotune.h"
#include "runtime/jit/jit.h"

int at_db_cache_path(char **out, RbBuf *err) {
  char *dir = NULL;
  *out = NULL;
  int rc = rt_cache_dir(&dir);
  if (rc == RB_EUSER)
    rb_buf_puts(err, "no cache directory for the tuning database "
                     "($RABIT_CACHE_DIR, $XDG_CACHE_HOME and $HOME are unset)");
  if (rc) return rc;
  size_t n = strlen(dir) + sizeof AT_DB_FILE + 1;
  *out = rb_malloc(n);
  if (*out) {
    size_t len = strlen(dir);
    int slash = len && dir[len - 1] == '/';
    memcpy(*out, dir, len);
    if (!slash) (*out)[len++] = '/';
    memcpy(*out + len, AT_DB_FILE, sizeof AT_DB_FILE);
  }
  rb_free(dir);
  return *out ? RB_OK : RB_EINTERNAL;
}

/* The paths already warned about in this process: a compile of several
 * files opens the database once each, and says its problem once. */
static pthread_mutex_t said_mu = PTHREAD_MUTEX_INITIALIZER;
static char *said[16];
static int nsaid;

static int first_warning(const char *path) {
  pthread_mutex_lock(&said_mu);
  int first = 1;
  for (int i = 0; i < nsaid && first; i++) first = strcmp(said[i], path) != 0;
  if (first && nsaid < (int)(sizeof said / sizeof said[0])) {
    said[nsaid] = rb_strdup(path);
    nsaid += said[nsaid] != NULL;
  }
  pthread_mutex_unlock(&said_mu);
  return first;
}

int at_db_open(AtDb *db, const char *path, RbBuf *warn) {
  at_db_free(db);
  RbBuf text = {0}, why = {0};
  int rc = RB_OK;
  if (rb_read_file_max(path, AT_DB_MAX_BYTES, &text) != 0) {
    int e = errno;
    if (e == ENOMEM) rc = RB_EINTERNAL;
    else if (e != ENOENT) {
      char cap[32];
      rb_buf_printf(&why, "%s: %s", path,
                    e == EFBIG ? "larger than a tuning database may be" : strerror(e));
      if (e == EFBIG) rb_buf_printf(&why, " (%s)", rb_size_str(AT_DB_MAX_BYTES, cap));
    }
  } else {
    rc = at_db_parse(db, text.data ? text.data : "", text.len, path, &why);
    if (rc == RB_EUSER) rc = RB_OK; /* the problem is in why: said below, the database stays empty */
  }
  if (rc == RB_OK && why.len && warn && first_warning(path))
    rb_buf_printf(warn, "warning: tuning database ignored: %s (the next tune or import replaces it)\n", why.data);
  if (why.oom || text.oom) rc = RB_EINTERNAL;
  rb_buf_free(&text);
  rb_buf_free(&why);
  return rc;
}

/* The lock file beside path, locked for writing; -1 with the reason in err. */
static int lock_db(const char *path, RbBuf *err, int *code) {
  RbBuf lp = {0};
  rb_buf_printf(&lp, "%s.lock", path);
  if (lp.oom) {
    *code = RB_EINTERNAL;
    rb_buf_free(&lp);
    return -1;
  }
  int fd = open(lp.data, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  int r = -1;
  if (fd >= 0) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    while ((r = fcntl(fd, F_SETLKW, &fl)) != 0 && errno == EINTR) {
    }
  }
  if (fd < 0 || r != 0) {
    int e = errno;
    rb_buf_printf(err, "%s: cannot %s: %s", lp.data, fd < 0 ? "create" : "lock", strerror(e));
    *code = e == EACCES || e == EROFS || e == EPERM || e == ENOENT || e == ENOTDIR ? RB_EUSER : RB_EINTERNAL;
    if (fd >= 0) close(fd);
    fd = -1;
  }
  rb_buf_free(&lp);
  return fd;
}

/* Make path's directory (mode 0700, the cache's) when it is missing. */
static int make_parent(const char *path, RbBuf *err) {
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path) return RB_OK;
  char *dir = rb_malloc((size_t)(slash - path) + 1);
  if (!dir) return RB_EINTERNAL;
  memcpy(dir, path, (size_t)(slash - path));
  dir[slash - path] = 0;
  int rc = RB_OK;
  if (rb_mkdir_p(dir, 0700) != 0) {
    rb_buf_printf(err, "%s: cannot create the directory: %s", dir, strerror(errno));
    rc = errno == ENOMEM ? RB_EINTERNAL : RB_EUSER;
  }
  rb_free(dir);
  return rc;
}

int at_db_edit(const char *path, AtDbEditFn fn, void *ctx, RbBuf *warn, RbBuf *err) {
  int rc = make_parent(path, err);
  if (rc) return rc;
  int fd = lock_db(path, err, &rc);
  if (fd < 0) return rc;
  AtDb db = {0};
  rc = at_db_open(&db, path, warn);
  if (rc == RB_OK) rc = fn(&db, ctx, err);
  if (rc == RB_OK) rc = at_db_save(&db, path, err);
  at_db_free(&db);
  close(fd); /* releases the lock */
  return rc;
}
