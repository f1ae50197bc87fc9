/* base.h: the few utilities every library shares (prefix rb_).
 * All heap memory goes through rb_malloc/rb_realloc so that tests can make
 * allocation fail on purpose; arenas hold a compilation's data and are freed
 * at once; RbBuf is a growable byte/string buffer. */
#ifndef RABIT_BASE_H
#define RABIT_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Allocation hook. rb_malloc returns NULL on failure (callers check). Tests set
 * rb_alloc_fail_after = n to make the (n+1)-th allocation fail; -1 disables. */
extern long rb_alloc_fail_after;
void *rb_malloc(size_t n);
void *rb_calloc(size_t n, size_t size);
void *rb_realloc(void *p, size_t n);
void rb_free(void *p);
char *rb_strdup(const char *s);

/* Arena: bump allocation in chunks, freed together. Allocation failure makes
 * rb_arena_alloc return NULL and sets arena->oom. */
typedef struct RbChunk RbChunk;
typedef struct {
  RbChunk *head;
  int oom;
} RbArena;

void *rb_arena_alloc(RbArena *a, size_t n);     /* zeroed, 16-byte aligned */
char *rb_arena_strdup(RbArena *a, const char *s);
char *rb_arena_strndup(RbArena *a, const char *s, size_t n);
char *rb_arena_printf(RbArena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rb_arena_free(RbArena *a);

/* Growable buffer, always NUL-terminated when len > 0. On allocation failure
 * it sets oom and drops further writes; check buf.oom once at the end. */
typedef struct {
  char *data;
  size_t len, cap;
  int oom;
} RbBuf;

void rb_buf_put(RbBuf *b, const void *p, size_t n);
void rb_buf_puts(RbBuf *b, const char *s);
void rb_buf_printf(RbBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rb_buf_vprintf(RbBuf *b, const char *fmt, va_list ap);
void rb_buf_free(RbBuf *b);
/* Append s as a JSON string: quotes and backslashes escaped, control bytes
 * as \u escapes, UTF-8 passed through. */
void rb_buf_json_str(RbBuf *b, const char *s);
/* Append s as XML text (an SVG label): &, <, > and " escaped. */
void rb_buf_xml_text(RbBuf *b, const char *s);

/* String -> int hash map (open addressing). Keys are not copied: they must
 * outlive the map. It keeps passes linear on graphs of 100k ops. */
typedef struct {
  const char **keys;
  int *vals;
  size_t cap, n;
} RbMap;

int rb_map_get(const RbMap *m, const char *key, int *val); /* 1 when found */
int rb_map_put(RbMap *m, const char *key, int val);        /* RB_OK or RB_EINTERNAL */
void rb_map_free(RbMap *m);

/* Write the concatenation of n parts to path so that readers see the old
 * file or the whole new one: a uniquely named temp file in the same
 * directory, every byte written, fsync, close, rename, fsync of the
 * directory. On failure the temp file is gone, an old file at path is
 * untouched, errno tells why, and "step: reason" is appended to err (if
 * non-NULL) for the caller to put after the path.
 * Returns RB_OK, RB_EUSER (missing directory, no permission, read-only) or
 * RB_EINTERNAL (full disk, I/O error...). */
int rb_write_atomic(const char *path, const void *const *parts, const size_t *lens, int n, RbBuf *err);

/* The same durable write with the caller's choices, for the kernel cache:
 * the temp file's name (in path's directory; it must not exist) and mode,
 * and a test hook. On failure step and file say what failed ("cannot write",
 * the temp file) with errno set; on success dir_unsynced says the directory's
 * fsync failed (the file is in place, but a crash could lose the rename). */
typedef struct {
  const char *tmp;       /* NULL: a unique name beside path */
  unsigned mode;         /* of the new file; 0: 0666 (the umask applies) */
  const long long *kill_after; /* test hook: the process kills itself after this many bytes; NULL: never */
  const char *step;      /* out */
  const char *file;      /* out: the temp file or path */
  int dir_unsynced;      /* out */
} RbDurableWrite;
int rb_write_durable(const char *path, const void *const *parts, const size_t *lens, int n, RbDurableWrite *w);

/* Read a whole file ("-" is stdin) of at most max bytes. Returns 0 on
 * success, else -1 with errno set: EFBIG when it holds more than max bytes
 * (it stops reading one byte past the cap, so an endless stream ends),
 * EISDIR for a directory. Every reader of untrusted input names its cap;
 * rb_size_str spells it for the message. */
int rb_read_file_max(const char *path, size_t max, RbBuf *out);
/* rb_read_file_max without a cap (a directory is still EISDIR). The IR and
 * the --text inputs are read with theirs; a new reader of untrusted input
 * should name one too. */
int rb_read_file(const char *path, RbBuf *out);
/* n as "16 MiB", "1 GiB" or "100 bytes", in buf; returns buf. */
const char *rb_size_str(size_t n, char buf[32]);

/* mkdir -p: every missing component of path made with mode (the umask
 * applies). Returns 0, or -1 with errno set (ENOTDIR when path exists and is
 * not a directory). The one directory maker: the cache, import and rabitc use it. */
int rb_mkdir_p(const char *path, unsigned mode);

/* Milliseconds on the monotonic clock: the one time helper, for durations. */
double rb_now_ms(void);

/* A small thread pool (pool.c): the host target's kernels spread their work
 * items over it. rb_pool_run calls fn(ctx, begin, end) on disjoint ranges
 * covering [0, n), at most grain items each, on the pool's threads and the
 * caller's, and returns when all are done. One run at a time per pool. */
typedef struct RbPool RbPool;
typedef void (*RbPoolFn)(void *ctx, int64_t begin, int64_t end);
/* threads: the workers besides the caller's thread; < 0: the online CPUs less one.
 * RB_OK, or RB_EINTERNAL (out of memory; no thread could start is not an
 * error: the caller's thread then does all the work). */
int rb_pool_open(RbPool **out, int threads);
void rb_pool_run(RbPool *p, int64_t n, int64_t grain, RbPoolFn fn, void *ctx); /* p NULL: the caller alone */
int rb_pool_threads(const RbPool *p); /* threads that run work, the caller's included */
void rb_pool_close(RbPool *p);

/* SHA-256 of n bytes (FIPS 180-4): the name data shards give their source text. */
void rb_sha256(const void *data, size_t n, unsigned char out[32]);

/* Status codes shared by the libraries: 0 ok, RB_EUSER for bad input (the
 * caller shows the diagnostics), RB_EINTERNAL for bugs and resource failures. */
enum { RB_OK = 0, RB_EUSER = 1, RB_EINTERNAL = 2 };

/* IEEE half <-> float on the CPU (round to nearest even), for weight files,
 * references and tests. */
#ifndef RABIT_HALF_DEFINED
#define RABIT_HALF_DEFINED
uint16_t rb_f16_from_f32(float f);
float rb_f32_from_f16(uint16_t h);
#endif
/* bf16 (the top half of an f32) <-> float: round to nearest even, a NaN stays a NaN;
 * the widening is exact. The rule of the kernels' cvt.rn.bf16.f32. */
uint16_t rb_bf16_from_f32(float f);
float rb_f32_from_bf16(uint16_t b);

#endif
