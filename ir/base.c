/* base.c: allocation hook, arenas and growable buffers shared by every library. */
#include "ir/base.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

long rb_alloc_fail_after = -1;

static int alloc_should_fail(void) {
  if (rb_alloc_fail_after < 0) return 0;
  if (rb_alloc_fail_after == 0) return 1;
  rb_alloc_fail_after--;
  return 0;
}

void *rb_malloc(size_t n) { return alloc_should_fail() ? NULL : malloc(n ? n : 1); }
void *rb_calloc(size_t n, size_t size) { return alloc_should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1); }
void *rb_realloc(void *p, size_t n) { return alloc_should_fail() ? NULL : realloc(p, n ? n : 1); }
void rb_free(void *p) { free(p); }

char *rb_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = rb_malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

/* ---- arena ---- */

struct RbChunk {
  RbChunk *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};

void *rb_arena_alloc(RbArena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  RbChunk *c = a->head;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    c = rb_malloc(sizeof(RbChunk) + cap);
    if (!c) {
      a->oom = 1;
      return NULL;
    }
    c->used = 0;
    c->cap = cap;
    c->next = a->head;
    a->head = c;
  }
  void *p = c->data + c->used;
  c->used += n;
  memset(p, 0, n);
  return p;
}

char *rb_arena_strndup(RbArena *a, const char *s, size_t n) {
  char *p = rb_arena_alloc(a, n + 1);
  if (p) memcpy(p, s, n);
  return p;
}

char *rb_arena_strdup(RbArena *a, const char *s) { return rb_arena_strndup(a, s, strlen(s)); }

char *rb_arena_printf(RbArena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = rb_arena_alloc(a, (size_t)n + 1);
  if (!p) return NULL;
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}

void rb_arena_free(RbArena *a) {
  for (RbChunk *c = a->head, *next; c; c = next) {
    next = c->next;
    rb_free(c);
  }
  a->head = NULL;
}

/* ---- buffer ---- */

static int buf_reserve(RbBuf *b, size_t extra) {
  if (b->oom) return 0;
  if (b->len + extra + 1 <= b->cap) return 1;
  size_t cap = b->cap ? b->cap * 2 : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = rb_realloc(b->data, cap);
  if (!p) {
    b->oom = 1;
    return 0;
  }
  b->data = p;
  b->cap = cap;
  return 1;
}

void rb_buf_put(RbBuf *b, const void *p, size_t n) {
  if (!buf_reserve(b, n)) return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
}

void rb_buf_puts(RbBuf *b, const char *s) { rb_buf_put(b, s, strlen(s)); }

void rb_buf_vprintf(RbBuf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0 || !buf_reserve(b, (size_t)n)) return;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

void rb_buf_printf(RbBuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  rb_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

void rb_buf_xml_text(RbBuf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '&') rb_buf_puts(b, "&amp;");
    else if (*s == '<') rb_buf_puts(b, "&lt;");
    else if (*s == '>') rb_buf_puts(b, "&gt;");
    else if (*s == '"') rb_buf_puts(b, "&quot;");
    else rb_buf_put(b, s, 1);
  }
}

void rb_buf_json_str(RbBuf *b, const char *s) {
  rb_buf_puts(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') rb_buf_printf(b, "\\%c", c);
    else if (c < 0x20) rb_buf_printf(b, "\\u%04x", c);
    else rb_buf_put(b, &c, 1);
  }
  rb_buf_puts(b, "\"");
}

void rb_buf_free(RbBuf *b) {
  rb_free(b->data);
  memset(b, 0, sizeof *b);
}

/* ---- files ---- */

/* Writes n bytes; *done counts what this file has taken so far, for the
 * kill_after test hook (a writer killed mid-file, with the bytes up to there on disk). */
static int write_all(int fd, const void *buf, size_t n, long long *done, long long kill_after) {
  const char *p = buf;
  while (n) {
    size_t chunk = n > ((size_t)1 << 30) ? (size_t)1 << 30 : n;
    if (kill_after >= 0 && *done + (long long)chunk >= kill_after) {
      chunk = (size_t)(kill_after - *done);
      if (chunk == 0) raise(SIGKILL);
    }
    ssize_t k = write(fd, p, chunk);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (k == 0) {
      errno = EIO;
      return -1;
    }
    p += k;
    n -= (size_t)k;
    *done += k;
  }
  if (kill_after >= 0 && *done >= kill_after) raise(SIGKILL);
  return 0;
}

/* The rename is durable only once the directory entry is. */
static int fsync_parent(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash) snprintf(dir, sizeof dir, ".");
  else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
  int fd = open(dir, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int r = fsync(fd);
  int e = errno;
  close(fd);
  errno = e;
  return r;
}

int rb_write_durable(const char *path, const void *const *parts, const size_t *lens, int n, RbDurableWrite *w) {
  static unsigned counter;
  w->step = "cannot create";
  w->dir_unsynced = 0;
  size_t tlen = strlen(path) + 48;
  char *own = w->tmp ? NULL : rb_malloc(tlen);
  const char *tmp = w->tmp ? w->tmp : own;
  w->file = path;
  if (!tmp) {
    errno = ENOMEM;
    return RB_EINTERNAL;
  }
  unsigned mode = w->mode ? w->mode : 0666;
  int fd = -1;
  /* O_EXCL: a caller's name is its own to make unique; ours is per process
   * and per call, so concurrent writers of the same path never share one. */
  for (int tries = 0; fd < 0 && tries < 16; tries++) {
    if (own) snprintf(own, tlen, "%s.tmp.%ld.%u", path, (long)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0 && (errno != EEXIST || !own)) break;
  }
  int created = fd >= 0;
  long long done = 0;
  w->file = tmp;
  if (fd < 0) goto fail;
  w->step = "cannot write";
  for (int i = 0; i < n; i++)
    if (write_all(fd, parts[i], lens[i], &done, w->kill_after ? *w->kill_after : -1) != 0) goto fail;
  w->step = "cannot sync";
  if (fsync(fd) != 0) goto fail;
  w->step = "cannot close"; /* NFS and friends report write errors here */
  int r = close(fd);
  fd = -1;
  if (r != 0) goto fail;
  w->step = "cannot rename to";
  w->file = path;
  if (rename(tmp, path) != 0) goto fail;
  /* Without this a crash can lose the rename; the file is whole either way. */
  w->dir_unsynced = fsync_parent(path) != 0;
  rb_free(own);
  return RB_OK;
fail:;
  int e = errno;
  if (fd >= 0) close(fd);
  if (created) unlink(tmp);
  if (w->file == own) w->file = path; /* own is freed: name the target instead */
  rb_free(own);
  errno = e;
  return e == ENOENT || e == EACCES || e == ENOTDIR || e == EROFS || e == EPERM ? RB_EUSER : RB_EINTERNAL;
}

int rb_write_atomic(const char *path, const void *const *parts, const size_t *lens, int n, RbBuf *err) {
  RbDurableWrite w = {0};
  int rc = rb_write_durable(path, parts, lens, n, &w);
  /* The caller names path; the step says what happened to it. */
  const char *step = !strcmp(w.step, "cannot create") ? "cannot create temp file"
                     : !strcmp(w.step, "cannot rename to") ? "cannot rename temp file into place" : w.step;
  if (rc && err) rb_buf_printf(err, "%s: %s", step, strerror(errno));
  return rc;
}

int rb_read_file_max(const char *path, size_t max, RbBuf *out) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) return -1;
  /* fopen succeeds on a directory and fread then fails with EISDIR: say so
   * before reading, rather than a bare I/O error after. */
  struct stat st;
  int known = fstat(fileno(f), &st) == 0;
  if (known && (S_ISDIR(st.st_mode) || (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max))) {
    /* A regular file's size is known: refuse a big one without reading it. */
    if (f != stdin) fclose(f);
    errno = S_ISDIR(st.st_mode) ? EISDIR : EFBIG;
    return -1;
  }
  char tmp[65536];
  size_t n, got = 0;
  int over = 0, err = 0;
  /* Read at most max + 1 bytes: one byte past the cap is the proof it is
   * over, so an endless stream (/dev/zero, a pipe) ends here too. */
  errno = 0;
  for (;;) {
    size_t left = max - got, want = left < sizeof tmp ? left + 1 : sizeof tmp;
    if ((n = fread(tmp, 1, want, f)) == 0) break;
    if (n > max - got) {
      over = 1;
      break;
    }
    rb_buf_put(out, tmp, n);
    got += n;
    if (out->oom) break;
  }
  if (!over && ferror(f)) err = errno ? errno : EIO;
  if (f != stdin) fclose(f);
  if (over) {
    errno = EFBIG;
    return -1;
  }
  if (err) {
    errno = err;
    return -1;
  }
  if (out->oom) {
    errno = ENOMEM;
    return -1;
  }
  rb_buf_put(out, "", 0); /* ensure data is non-NULL and terminated */
  return 0;
}

int rb_read_file(const char *path, RbBuf *out) { return rb_read_file_max(path, SIZE_MAX - 1, out); }

const char *rb_size_str(size_t n, char buf[32]) {
  if (n >= (1u << 30) && n % (1u << 30) == 0) snprintf(buf, 32, "%zu GiB", n >> 30);
  else if (n >= (1u << 20) && n % (1u << 20) == 0) snprintf(buf, 32, "%zu MiB", n >> 20);
  else if (n >= (1u << 10) && n % (1u << 10) == 0) snprintf(buf, 32, "%zu KiB", n >> 10);
  else snprintf(buf, 32, "%zu bytes", n);
  return buf;
}

/* ---- string map ---- */

static size_t str_hash(const char *s) {
  size_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

int rb_map_get(const RbMap *m, const char *key, int *val) {
  if (!m->cap) return 0;
  for (size_t i = str_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (!m->keys[i]) return 0;
    if (strcmp(m->keys[i], key) == 0) {
      if (val) *val = m->vals[i];
      return 1;
    }
  }
}

int rb_map_put(RbMap *m, const char *key, int val) {
  if ((m->n + 1) * 2 > m->cap) { /* keep the load under one half */
    RbMap big = {0};
    big.cap = m->cap ? m->cap * 2 : 64;
    big.keys = rb_calloc(big.cap, sizeof *big.keys);
    big.vals = rb_calloc(big.cap, sizeof *big.vals);
    if (!big.keys || !big.vals) {
      rb_free(big.keys);
      rb_free(big.vals);
      return RB_EINTERNAL;
    }
    for (size_t i = 0; i < m->cap; i++)
      if (m->keys[i]) rb_map_put(&big, m->keys[i], m->vals[i]); /* cannot grow: fits */
    rb_map_free(m);
    *m = big;
  }
  size_t i = str_hash(key) & (m->cap - 1);
  while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & (m->cap - 1);
  if (!m->keys[i]) m->n++;
  m->keys[i] = key;
  m->vals[i] = val;
  return RB_OK;
}

void rb_map_free(RbMap *m) {
  rb_free(m->keys);
  rb_free(m->vals);
  memset(m, 0, sizeof *m);
}

/* ---- half precision ---- */

uint16_t rb_f16_from_f32(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u) /* inf or nan */
    return (uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0));
  if (mag >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow -> inf */
  if (mag < 0x38800000u) {                                  /* subnormal or zero */
    if (mag < 0x33000000u) return (uint16_t)sign;
    uint32_t e = mag >> 23, m = (mag & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14..24: half's subnormal unit is 2^-24 */
    uint32_t half = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t h = ((mag - 0x38000000u) >> 13);
  uint32_t rem = mag & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
  return (uint16_t)(sign | h);
}

float rb_f32_from_f16(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu, x;
  if (e == 0) {
    if (m == 0) x = sign;
    else { /* subnormal: normalize */
      e = 113;
      while (!(m & 0x400u)) { m <<= 1; e--; }
      x = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (e == 31) x = sign | 0x7f800000u | (m << 13);
  else x = sign | ((e + 112) << 23) | (m << 13);
  float f;
  memcpy(&f, &x, 4);
  return f;
}

uint16_t rb_bf16_from_f32(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet, and still a NaN */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float rb_f32_from_bf16(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* ---- directories and time ---- */

int rb_mkdir_p(const char *path, unsigned mode) {
  size_t n = strlen(path);
  char *p = rb_malloc(n + 1);
  if (!p) {
    errno = ENOMEM;
    return -1;
  }
  memcpy(p, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != 0) continue;
    char saved = p[i];
    p[i] = 0;
    if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
      int e = errno;
      rb_free(p);
      errno = e;
      return -1;
    }
    p[i] = saved;
  }
  rb_free(p);
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

double rb_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* ---- SHA-256 (FIPS 180-4), for naming source texts in data shards ---- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t rotr(uint32_t x, int n) { return x >> n | x << (32 - n); }

static void sha_block(uint32_t h[8], const unsigned char *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ w[i - 15] >> 3;
    uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ w[i - 2] >> 10;
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
    uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void rb_sha256(const void *data, size_t n, unsigned char out[32]) {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const unsigned char *p = data;
  size_t left = n;
  for (; left >= 64; left -= 64, p += 64) sha_block(h, p);
  unsigned char tail[128] = {0};
  memcpy(tail, p, left);
  tail[left] = 0x80;
  size_t tl = left < 56 ? 64 : 128;
  uint64_t bits = (uint64_t)n * 8;
  for (int i = 0; i < 8; i++) tail[tl - 1 - i] = (unsigned char)(bits >> (8 * i));
  sha_block(h, tail);
  if (tl == 128) sha_block(h, tail + 64);
  for (int i = 0; i < 8; i++)
    for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}
