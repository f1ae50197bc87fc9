/* cache.c: compiled cubins on disk under an XXH3-128 key, one file per key.
 * Entries are written to a temp file and renamed into place, so a reader sees
 * either nothing or a whole entry; every load re-checks the header and the
 * payload checksum. A directory that can be read but not written is used
 * read-only (its entries load, new ones stay in memory); when no directory is
 * usable at all the cache lives in memory. */
#define _DEFAULT_SOURCE /* flock(2) is not POSIX; glibc hides it without this */

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
/* Inline xxhash: a streaming state on the stack needs the state's layout,
 * which libxxhash does not keep stable across versions. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "runtime/jit/jit.h"

/* Entry file layout, all integers little-endian:
 *   0  magic "RABITCB\0"   8 bytes
 *   8  format version      u32 (RT_CACHE_FORMAT)
 *  12  key hi, key lo      2 x u64
 *  28  payload length      u64
 *  36  payload checksum    u64 (XXH3-64 of the payload)
 *  44  payload (the cubin) */
static const char entry_magic[8] = {'R', 'A', 'B', 'I', 'T', 'C', 'B', 0};
enum { HDR_SIZE = 44, HEX_LEN = 32 };

#define ENTRY_SUFFIX ".cubin"
#define LOCK_SUFFIX ".lock"
#define TEMP_PREFIX "tmp."
/* A temp file this old belongs to a writer that died; open() removes it. */
#define TEMP_STALE_SECONDS (10 * 60)

/* Memory-only entries, used when the directory is unusable. */
typedef struct MemEntry {
  struct MemEntry *next;
  RtKey key;
  uint64_t used; /* LRU tick */
  size_t len;
  unsigned char data[];
} MemEntry;

struct RtCache {
  char *dir; /* NULL when memory-only */
  int readonly; /* dir's entries are read; puts go to memory */
  uint64_t max_bytes;
  MemEntry *mem;
  uint64_t tick;
  unsigned seq; /* makes temp names unique within the process (atomic) */
  /* Guards the memory-only entries, so that rabitc's compile threads can
   * share one cache. Disk entries need no lock: each write goes through its
   * own temp file and an atomic rename. */
  pthread_mutex_t mu;
};

/* Things said once per process, however many caches it opens and kernels it
 * builds: rabitc opens one cache per input file, and a full disk fails every
 * kernel's put the same way. */
static int said_mode, said_readonly, said_put, said_lock;

static int first_time(int *flag) { return !__atomic_exchange_n(flag, 1, __ATOMIC_RELAXED); }

/* ---- key ---- */

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* Each field goes in as a u64 length then its bytes, so no two different
 * field lists produce the same byte stream. NULL gets a length no string can
 * have, which keeps it distinct from "". */
static void key_field(XXH3_state_t *st, const char *s) {
  unsigned char n[8];
  uint64_t len = s ? strlen(s) : UINT64_MAX;
  put_u64(n, len);
  XXH3_128bits_update(st, n, sizeof n);
  if (s) XXH3_128bits_update(st, s, (size_t)len);
}

/* The key of everything that changes a binary, plus the cache format, so that
 * a format change never loads an old entry. */
RtKey rt_key_make(const RtKeyParts *p) {
  XXH3_state_t st;
  XXH3_128bits_reset(&st);
  static const char domain[] = "rabit kernel cache key";
  XXH3_128bits_update(&st, domain, sizeof domain);
  unsigned char fmt[4];
  put_u32(fmt, RT_CACHE_FORMAT);
  XXH3_128bits_update(&st, fmt, sizeof fmt);
  key_field(&st, p->source);
  key_field(&st, p->options);
  key_field(&st, p->arch);
  key_field(&st, p->compiler_id);
  key_field(&st, p->tool_version);
  XXH128_hash_t h = XXH3_128bits_digest(&st);
  return (RtKey){h.high64, h.low64};
}

/* 32 lowercase hex digits, hi first; this is also the entry's file name. */
void rt_key_hex(RtKey k, char out[33]) {
  snprintf(out, 33, "%016llx%016llx", (unsigned long long)k.hi, (unsigned long long)k.lo);
}

static int key_eq(RtKey a, RtKey b) { return a.hi == b.hi && a.lo == b.lo; }

/* ---- file names ---- */

static int is_hex_name(const char *name) {
  for (int i = 0; i < HEX_LEN; i++)
    if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return 0;
  return 1;
}

/* Whether name is "<32 hex>suffix": only such files are ever loaded. */
static int name_is(const char *name, const char *suffix) {
  size_t n = strlen(name);
  return n == HEX_LEN + strlen(suffix) && is_hex_name(name) && strcmp(name + HEX_LEN, suffix) == 0;
}

/* "<dir>/<name>" in an rb_malloc'ed string, or NULL. */
static char *path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = rb_malloc(a + 1 + b + 1);
  if (!p) return NULL;
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

static char *key_path(const RtCache *c, RtKey key, const char *suffix) {
  char name[HEX_LEN + 16];
  rt_key_hex(key, name);
  strcat(name, suffix);
  return path_join(c->dir, name);
}

/* ---- memory-only mode ---- */

static uint64_t mem_total(const RtCache *c) {
  uint64_t t = 0;
  for (MemEntry *e = c->mem; e; e = e->next) t += e->len;
  return t;
}

static void mem_remove(RtCache *c, MemEntry *victim) {
  for (MemEntry **pp = &c->mem; *pp; pp = &(*pp)->next)
    if (*pp == victim) {
      *pp = victim->next;
      rb_free(victim);
      return;
    }
}

static MemEntry *mem_find(RtCache *c, RtKey key) {
  for (MemEntry *e = c->mem; e; e = e->next)
    if (key_eq(e->key, key)) return e;
  return NULL;
}

/* Same LRU policy as on disk, by payload bytes; keep is never evicted. */
static void mem_evict(RtCache *c, const MemEntry *keep) {
  uint64_t total = mem_total(c);
  while (total > c->max_bytes) {
    MemEntry *old = NULL;
    for (MemEntry *e = c->mem; e; e = e->next)
      if (e != keep && (!old || e->used < old->used)) old = e;
    if (!old) break;
    total -= old->len;
    mem_remove(c, old);
  }
}

static int mem_put(RtCache *c, RtKey key, const void *data, size_t len, RbBuf *err) {
  MemEntry *e = rb_malloc(sizeof *e + len);
  if (!e) {
    if (err) rb_buf_printf(err, "kernel cache: out of memory storing %zu bytes\n", len);
    return RB_EINTERNAL;
  }
  MemEntry *old = mem_find(c, key);
  if (old) mem_remove(c, old);
  e->key = key;
  e->used = ++c->tick;
  e->len = len;
  if (len) memcpy(e->data, data, len);
  e->next = c->mem;
  c->mem = e;
  mem_evict(c, e);
  return RB_OK;
}

/* A copy of key's memory entry, or NULL (absent, or out of memory). */
static void *mem_get(RtCache *c, RtKey key, size_t *len) {
  pthread_mutex_lock(&c->mu);
  MemEntry *e = mem_find(c, key);
  void *p = e ? rb_malloc(e->len ? e->len : 1) : NULL;
  if (p) {
    if (e->len) memcpy(p, e->data, e->len);
    e->used = ++c->tick;
    *len = e->len;
  }
  pthread_mutex_unlock(&c->mu);
  return p;
}

/* ---- directory helpers ---- */


/* A fresh temp name in the cache directory. It never matches the entry
 * pattern, so a temp file left by a killed writer can never be loaded. */
static char *temp_path(RtCache *c, const char *what) {
  char name[96];
  snprintf(name, sizeof name, TEMP_PREFIX "%s.%ld.%u", what, (long)getpid(),
           __atomic_fetch_add(&c->seq, 1, __ATOMIC_RELAXED));
  return path_join(c->dir, name);
}

/* Proves that files can be created in dir; errno says why not. */
static int dir_writable(RtCache *c) {
  char *p = temp_path(c, "probe");
  if (!p) {
    errno = ENOMEM;
    return 0;
  }
  int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  int e = errno;
  if (fd >= 0) {
    close(fd);
    unlink(p);
  }
  rb_free(p);
  errno = e;
  return fd >= 0;
}

/* Unlinks path only while it still names the file open as fd: another
 * process may have renamed a good entry over it since we opened it. */
static void unlink_if_same(const char *path, int fd) {
  struct stat a, b;
  if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    unlink(path);
}

/* Removes a lock file that nobody holds. A fetch that opened the old inode
 * notices the unlink after locking it and starts over (see lock_key). */
static void remove_idle_lock(const char *path) {
  int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return;
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) unlink_if_same(path, fd);
  close(fd); /* also releases the lock */
}

static int is_stale_temp(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && time(NULL) - st.st_mtime > TEMP_STALE_SECONDS;
}

/* ---- open / close ---- */

/* Sets *out to dir, else $RABIT_CACHE_DIR, else $XDG_CACHE_HOME/rabit, else
 * $HOME/.cache/rabit. Empty values and, as the XDG spec asks, a relative
 * $XDG_CACHE_HOME are ignored. Returns 0, 1 when none is set, -1 out of memory. */
static int resolve_dir(const char *dir, char **out) {
  const char *e;
  if (dir && *dir)
    *out = rb_strdup(dir);
  else if ((e = getenv("RABIT_CACHE_DIR")) && *e)
    *out = rb_strdup(e);
  else if ((e = getenv("XDG_CACHE_HOME")) && *e == '/')
    *out = path_join(e, "rabit");
  else if ((e = getenv("HOME")) && *e)
    *out = path_join(e, ".cache/rabit");
  else
    return *out = NULL, 1;
  return *out ? 0 : -1;
}

/* The directory rt_cache_open(dir = NULL) uses (contract in jit.h). */
int rt_cache_dir(char **out) {
  int r = resolve_dir(NULL, out);
  return r < 0 ? RB_EINTERNAL : r > 0 ? RB_EUSER : RB_OK;
}

static void remove_stale_temps(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (strncmp(de->d_name, TEMP_PREFIX, strlen(TEMP_PREFIX)) != 0) continue;
    char *p = path_join(dir, de->d_name);
    if (p && is_stale_temp(p)) unlink(p);
    rb_free(p);
  }
  closedir(d);
}

/* A cache directory others can enter is made private (0700 in DESIGN.md)
 * when it is ours; when it is not, or the mode cannot change, a warning says
 * so once: other users could read its kernels, or replace them. */
static void check_mode(const char *dir, RbBuf *warn) {
  struct stat st;
  if (stat(dir, &st) != 0 || !(st.st_mode & 077)) return;
  unsigned mode = (unsigned)st.st_mode & 07777;
  if (st.st_uid == geteuid() && chmod(dir, st.st_mode & 0700) == 0) return;
  int e = errno;
  if (!first_time(&said_mode) || !warn) return;
  const char *risk = mode & 022 ? "read or replace its kernels" : "read its kernels";
  if (st.st_uid != geteuid())
    rb_buf_printf(warn,
                  "warning: kernel cache directory '%s' has mode %04o and belongs to uid %u, not to you; "
                  "other users can %s\n",
                  dir, mode, (unsigned)st.st_uid, risk);
  else
    rb_buf_printf(warn, "warning: kernel cache directory '%s' has mode %04o and cannot be made private (%s); "
                        "other users can %s\n",
                  dir, mode, strerror(e), risk);
}

/* Opens the cache (contract in jit.h). An unusable directory is not an
 * error: compiling still works, only slower, so it becomes a warning. */
int rt_cache_open(RtCache **out, const char *dir, uint64_t max_bytes, RbBuf *warn) {
  *out = NULL;
  RtCache *c = rb_calloc(1, sizeof *c);
  if (!c) return RB_EINTERNAL;
  pthread_mutex_init(&c->mu, NULL);
  c->max_bytes = max_bytes;
  int r = resolve_dir(dir, &c->dir);
  if (r < 0) {
    rb_free(c);
    return RB_EINTERNAL;
  }
  if (r > 0) {
    if (warn)
      rb_buf_puts(warn, "warning: no kernel cache directory ($RABIT_CACHE_DIR, $XDG_CACHE_HOME "
                        "and $HOME are unset); caching in memory only\n");
    *out = c;
    return RB_OK;
  }
  int made = rb_mkdir_p(c->dir, 0700) == 0;
  if (!made || !dir_writable(c)) {
    int e = errno;
    if (e == ENOMEM) {
      rt_cache_close(c);
      return RB_EINTERNAL;
    }
    /* Readable but not writable (a read-only mount, a directory without w):
     * its entries are as good as ever, so they are used. */
    if (made && (e == EACCES || e == EPERM || e == EROFS) &&
        faccessat(AT_FDCWD, c->dir, R_OK | X_OK, AT_EACCESS) == 0) {
      c->readonly = 1;
      check_mode(c->dir, warn);
      if (warn && first_time(&said_readonly))
        rb_buf_printf(warn,
                      "warning: kernel cache directory '%s' is read-only (%s); its kernels are used, "
                      "new ones are cached in memory only\n",
                      c->dir, strerror(e));
      *out = c;
      return RB_OK;
    }
    if (warn)
      rb_buf_printf(warn,
                    "warning: kernel cache directory '%s' is not writable (%s); caching in memory "
                    "only\n",
                    c->dir, strerror(e));
    rb_free(c->dir);
    c->dir = NULL;
    *out = c;
    return RB_OK;
  }
  check_mode(c->dir, warn);
  remove_stale_temps(c->dir);
  *out = c;
  return RB_OK;
}

/* Frees c and its memory entries; entries on disk stay. */
void rt_cache_close(RtCache *c) {
  if (!c) return;
  while (c->mem) mem_remove(c, c->mem);
  pthread_mutex_destroy(&c->mu);
  rb_free(c->dir);
  rb_free(c);
}

/* ---- get ---- */

/* Reads exactly n bytes; -1 on error or early end of file. */
static int read_all(int fd, void *buf, size_t n) {
  unsigned char *p = buf;
  while (n) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Reads and checks the entry open as fd. Returns 1 with the payload, 0 when
 * the entry is bad (wrong magic, version, key, length or checksum), -1 when it
 * could not be read or allocated (the entry may be fine: keep it). */
static int entry_load(int fd, RtKey key, void **data, size_t *len) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -1;
  if (!S_ISREG(st.st_mode)) return -1; /* not ours: a miss, left alone */
  if (st.st_size < HDR_SIZE) return 0;
  unsigned char h[HDR_SIZE];
  if (read_all(fd, h, HDR_SIZE) != 0) return -1;
  if (memcmp(h, entry_magic, sizeof entry_magic) != 0) return 0;
  if (get_u32(h + 8) != RT_CACHE_FORMAT) return 0;
  if (!key_eq((RtKey){get_u64(h + 12), get_u64(h + 20)}, key)) return 0;
  uint64_t n = get_u64(h + 28);
  if (n != (uint64_t)st.st_size - HDR_SIZE) return 0;
  void *p = rb_malloc((size_t)n);
  if (!p) return -1;
  if (read_all(fd, p, (size_t)n) != 0) {
    rb_free(p);
    return -1;
  }
  if (XXH3_64bits(p, (size_t)n) != get_u64(h + 36)) {
    rb_free(p);
    return 0;
  }
  *data = p;
  *len = (size_t)n;
  return 1;
}

/* Looks key up (contract in jit.h). */
int rt_cache_get(RtCache *c, RtKey key, void **data, size_t *len) {
  *data = NULL;
  *len = 0;
  if (!c->dir) return (*data = mem_get(c, key, len)) != NULL;
  char *path = key_path(c, key, ENTRY_SUFFIX);
  if (!path) return 0;
  /* O_NOFOLLOW: an entry is a file we wrote, never a link to somewhere else. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    rb_free(path);
    return c->readonly && (*data = mem_get(c, key, len)) != NULL;
  }
  int r = entry_load(fd, key, data, len);
  if (r == 0 && !c->readonly) unlink_if_same(path, fd);
  /* The mtime is the LRU time; a failure only makes eviction less exact. */
  if (r == 1) futimens(fd, NULL);
  close(fd);
  rb_free(path);
  if (r != 1 && c->readonly) return (*data = mem_get(c, key, len)) != NULL;
  return r == 1;
}

/* ---- put ---- */

/* Test hook: RABIT_CACHE_TEST_STALL_AFTER_BYTES=N makes a writer raise SIGKILL
 * once N bytes of its temp file are written, so tests can leave a half-written
 * temp file exactly as a killed process would. Unset, it costs one getenv. */
static long long stall_after_bytes(void) {
  const char *s = getenv("RABIT_CACHE_TEST_STALL_AFTER_BYTES");
  return s && *s ? atoll(s) : -1;
}

typedef struct {
  char *name;
  struct timespec mtime;
  uint64_t size;
} DiskEntry;

static int disk_entry_older(const void *a, const void *b) {
  const DiskEntry *x = a, *y = b;
  if (x->mtime.tv_sec != y->mtime.tv_sec) return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
  if (x->mtime.tv_nsec != y->mtime.tv_nsec) return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* Lists the entry files of dir with their mtime and size. Returns the count,
 * or -1 when the directory cannot be read or memory runs out. */
static long disk_entries(const char *dir, DiskEntry **out) {
  *out = NULL;
  DIR *d = opendir(dir);
  if (!d) return -1;
  DiskEntry *v = NULL;
  long n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!name_is(de->d_name, ENTRY_SUFFIX)) continue;
    char *p = path_join(dir, de->d_name);
    struct stat st;
    /* Gone already (another process evicted it), or not a file we wrote (a
     * directory or a link that happens to have an entry's name): skipped. */
    if (!p || lstat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
      rb_free(p);
      if (!p) goto oom;
      continue;
    }
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      DiskEntry *nv = rb_realloc(v, (size_t)cap * sizeof *v);
      if (!nv) {
        rb_free(p);
        goto oom;
      }
      v = nv;
    }
    v[n++] = (DiskEntry){p, st.st_mtim, (uint64_t)st.st_size};
  }
  closedir(d);
  *out = v;
  return n;
oom:
  while (n > 0) rb_free(v[--n].name);
  rb_free(v);
  closedir(d);
  return -1;
}

static void disk_entries_free(DiskEntry *v, long n) {
  for (long i = 0; i < n; i++) rb_free(v[i].name);
  rb_free(v);
}

/* Deletes least-recently-used entries until the entry files total at most
 * max_bytes, never the one at keep. Best effort: a failure leaves the cache
 * larger than asked, which is not worth failing a put for. */
static void disk_evict(RtCache *c, const char *keep) {
  DiskEntry *v;
  long n = disk_entries(c->dir, &v);
  if (n < 0) return;
  uint64_t total = 0;
  for (long i = 0; i < n; i++) total += v[i].size;
  if (total > c->max_bytes) {
    qsort(v, (size_t)n, sizeof *v, disk_entry_older);
    for (long i = 0; i < n && total > c->max_bytes; i++) {
      if (strcmp(v[i].name, keep) == 0) continue;
      if (unlink(v[i].name) == 0 || errno == ENOENT) total -= v[i].size;
      /* Its lock file goes too, if nobody holds it: name.cubin -> name.lock */
      size_t len = strlen(v[i].name);
      char *lock = rb_malloc(len + 1);
      if (lock) {
        memcpy(lock, v[i].name, len - strlen(ENTRY_SUFFIX));
        strcpy(lock + len - strlen(ENTRY_SUFFIX), LOCK_SUFFIX);
        remove_idle_lock(lock);
        rb_free(lock);
      }
    }
  }
  disk_entries_free(v, n);
}

/* Stores an entry (contract in jit.h). */
int rt_cache_put(RtCache *c, RtKey key, const void *data, size_t len, RbBuf *err) {
  if (!c->dir || c->readonly) {
    pthread_mutex_lock(&c->mu);
    int rc = mem_put(c, key, data, len, err);
    pthread_mutex_unlock(&c->mu);
    return rc;
  }
  char hex[33];
  rt_key_hex(key, hex);
  char *final = key_path(c, key, ENTRY_SUFFIX);
  char *tmp = temp_path(c, hex);
  if (!final || !tmp) {
    rb_free(final);
    rb_free(tmp);
    if (err) rb_buf_puts(err, "kernel cache: out of memory\n");
    return RB_EINTERNAL;
  }
  unsigned char h[HDR_SIZE];
  memcpy(h, entry_magic, sizeof entry_magic);
  put_u32(h + 8, RT_CACHE_FORMAT);
  put_u64(h + 12, key.hi);
  put_u64(h + 20, key.lo);
  put_u64(h + 28, len);
  put_u64(h + 36, XXH3_64bits(data, len));

  long long stall = stall_after_bytes();
  RbDurableWrite w = {.tmp = tmp, .mode = 0600, .kill_after = stall >= 0 ? &stall : NULL};
  const void *parts[2] = {h, data};
  size_t lens[2] = {sizeof h, len};
  if (rb_write_durable(final, parts, lens, 2, &w) != RB_OK) goto fail;
  /* The entry is valid either way; a lost rename only costs a rebuild. */
  if (w.dir_unsynced && err)
    rb_buf_printf(err, "kernel cache: cannot sync directory '%s': %s\n", c->dir, strerror(errno));
  disk_evict(c, final);
  rb_free(final);
  rb_free(tmp);
  return RB_OK;

fail:;
  int e = errno;
  if (err) rb_buf_printf(err, "kernel cache: %s '%s': %s\n", w.step, w.file, strerror(e));
  rb_free(final);
  rb_free(tmp);
  return RB_EINTERNAL;
}

/* ---- fetch ---- */

/* Takes the key's lock file; returns its fd, or -1 (errno set). The lock
 * file may be unlinked by eviction or clear between our open and our flock,
 * in which case we hold a lock nobody else can see: check and start over. */
static int lock_key(const char *path) {
  for (;;) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return -1;
    int r;
    while ((r = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {
    }
    if (r != 0) {
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
    struct stat a, b;
    if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
      return fd;
    close(fd);
  }
}

/* Get-or-build (contract in jit.h). A built kernel that cannot be stored
 * is still returned with RB_OK: the cache is an optimisation, so its failure
 * goes to err as a message, not as the result, and only the first one in the
 * process: a full disk fails every kernel alike, and one line says it. */
int rt_cache_fetch(RtCache *c, RtKey key, RtBuildFn build, void *ctx, void **data, size_t *len,
                   int *hit, RbBuf *err) {
  *hit = 0;
  if (rt_cache_get(c, key, data, len)) {
    *hit = 1;
    return RB_OK;
  }
  int lock = -1;
  if (c->dir && !c->readonly) {
    char *lp = key_path(c, key, LOCK_SUFFIX);
    if (lp) {
      lock = lock_key(lp);
      /* Without the lock we only risk compiling twice, so carry on. */
      if (lock < 0 && err && first_time(&said_lock))
        rb_buf_printf(err, "kernel cache: cannot lock '%s': %s (not reported again)\n", lp, strerror(errno));
      rb_free(lp);
    }
    /* Whoever held the lock before us may have built it. */
    if (lock >= 0 && rt_cache_get(c, key, data, len)) {
      close(lock);
      *hit = 1;
      return RB_OK;
    }
  }
  *data = NULL;
  *len = 0;
  int rc = build(ctx, data, len);
  if (rc == RB_OK) {
    RbBuf why = {0};
    int put = rt_cache_put(c, key, *data, *len, &why);
    if (err && why.len && put == RB_OK) rb_buf_put(err, why.data, why.len);
    else if (err && why.len && first_time(&said_put))
      rb_buf_printf(err, "%.*s (kernels not stored are rebuilt next time; further failures to store are not "
                         "reported)\n", (int)strcspn(why.data, "\n"), why.data);
    rb_buf_free(&why);
  }
  if (lock >= 0) close(lock); /* closing releases the flock */
  return rc;
}

/* ---- stats / clear ---- */

/* Counts entries and the bytes of their files (header included) on disk,
 * or the payload bytes in memory-only mode. */
int rt_cache_stats(RtCache *c, RtCacheStats *st) {
  memset(st, 0, sizeof *st);
  st->max_bytes = c->max_bytes;
  st->dir = c->dir;
  st->readonly = c->readonly;
  if (!c->dir) {
    for (MemEntry *e = c->mem; e; e = e->next) {
      st->entries++;
      st->bytes += e->len;
    }
    return RB_OK;
  }
  DiskEntry *v;
  long n = disk_entries(c->dir, &v);
  if (n < 0) return errno == ENOMEM ? RB_EINTERNAL : RB_EUSER;
  st->entries = (uint64_t)n;
  for (long i = 0; i < n; i++) st->bytes += v[i].size;
  disk_entries_free(v, n);
  return RB_OK;
}

/* Removes every entry, lock file and temp file (contract in jit.h). A fetch
 * running meanwhile may compile once more or fail to store its entry; neither
 * corrupts the cache. What cannot be removed (a read-only directory, a stray
 * directory with one of our names) is named, up to CLEAR_NAMED of them. */
enum { CLEAR_NAMED = 8 };

static void clear_failed(RtCacheCleared *res, const char *path, int e, RbBuf *err) {
  if (++res->failed <= CLEAR_NAMED && err) rb_buf_printf(err, "kernel cache: cannot remove '%s': %s\n", path, strerror(e));
}

int rt_cache_clear(RtCache *c, RtCacheCleared *res, RbBuf *err) {
  memset(res, 0, sizeof *res);
  pthread_mutex_lock(&c->mu);
  while (c->mem) mem_remove(c, c->mem);
  pthread_mutex_unlock(&c->mu);
  if (!c->dir) return RB_OK;
  DIR *d = opendir(c->dir);
  if (!d) {
    int e = errno;
    if (err) rb_buf_printf(err, "kernel cache: cannot read directory '%s': %s\n", c->dir, strerror(e));
    return e == ENOMEM ? RB_EINTERNAL : RB_EUSER;
  }
  int rc = RB_OK;
  struct dirent *de;
  while ((de = readdir(d))) {
    const char *n = de->d_name;
    int entry = name_is(n, ENTRY_SUFFIX);
    if (!entry && !name_is(n, LOCK_SUFFIX) && strncmp(n, TEMP_PREFIX, strlen(TEMP_PREFIX)) != 0) continue;
    char *p = path_join(c->dir, n);
    struct stat st;
    if (!p) rc = RB_EINTERNAL;
    else if (lstat(p, &st) != 0) {
      if (errno != ENOENT) clear_failed(res, p, errno, err);
    } else if (unlink(p) == 0) {
      if (entry && S_ISREG(st.st_mode)) res->entries++, res->bytes += (uint64_t)st.st_size;
    } else if (errno != ENOENT)
      clear_failed(res, p, errno, err); /* a directory: EISDIR; a read-only cache: EACCES, EROFS */
    rb_free(p);
  }
  closedir(d);
  if (res->failed > CLEAR_NAMED && err)
    rb_buf_printf(err, "kernel cache: and %llu more files that cannot be removed\n",
                  (unsigned long long)(res->failed - CLEAR_NAMED));
  return rc != RB_OK ? rc : res->failed ? RB_EUSER : RB_OK;
}
