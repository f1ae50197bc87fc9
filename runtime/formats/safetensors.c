/* safetensors.c: the canonical weight files. The reader maps a file read-only
 * and trusts nothing in it: every header field is checked before a tensor
 * pointer is handed out. The writer copies tensors in, then writes them at
 * once to a temp file that is renamed into place. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "runtime/formats/formats.h"

/* A header this long is not a weight file; refusing it early bounds the copy
 * and the parse (the reference implementation uses the same limit). */
#define ST_MAX_HEADER (100u * 1000u * 1000u)
/* Header numbers go through cJSON's double: beyond 2^53 they are no longer
 * exact, so larger shapes and offsets are refused rather than misread. */
#define ST_MAX_INT ((uint64_t)1 << 53)

static const struct {
  const char *name;
  size_t size;
} dtypes[RT_NDTYPE] = {
    [RT_F32] = {"F32", 4}, [RT_F16] = {"F16", 2}, [RT_BF16] = {"BF16", 2}, [RT_I32] = {"I32", 4},
    [RT_I64] = {"I64", 8}, [RT_U8] = {"U8", 1},   [RT_I8] = {"I8", 1},
    [RT_F64] = {"F64", 8},
};

/* The safetensors spelling of a dtype, or "?" for a value outside the enum. */
const char *rt_dtype_name(RtDtype t) {
  return (unsigned)t < RT_NDTYPE ? dtypes[t].name : "?";
}

/* Bytes per element; 0 for a value outside the enum. */
size_t rt_dtype_size(RtDtype t) { return (unsigned)t < RT_NDTYPE ? dtypes[t].size : 0; }

/* cJSON allocates through malloc unless told otherwise; routing it through
 * rb_malloc lets the allocation-failure tests reach the parser too. */
static pthread_once_t json_hooks_once = PTHREAD_ONCE_INIT;
static void json_hooks_install(void) {
  cJSON_Hooks h = {rb_malloc, rb_free};
  cJSON_InitHooks(&h);
}

/* 1 when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or values
 * past U+10FFFF); *bad gets the offset of the first bad byte otherwise. The
 * reference reader refuses such headers, so we neither read nor write them. */
static int utf8_valid(const unsigned char *s, size_t n, size_t *bad) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t len;
    unsigned min;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) len = 2, min = 0x80, c &= 0x1f;
    else if ((c & 0xf0) == 0xe0) len = 3, min = 0x800, c &= 0x0f;
    else if ((c & 0xf8) == 0xf0) len = 4, min = 0x10000, c &= 0x07;
    else break;
    if (n - i < len) break;
    size_t k = 1;
    for (; k < len && (s[i + k] & 0xc0) == 0x80; k++) c = (c << 6) | (s[i + k] & 0x3f);
    if (k < len || c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) break;
    i += len;
  }
  if (bad) *bad = i;
  return i == n;
}

/* ==== reader ==== */

struct RtSafetensors {
  const char *path; /* for messages; in the arena */
  const unsigned char *base;
  size_t size;
  int mapped; /* base is our mmap (else the caller's memory) */
  RtTensor *t;
  int n;
  const char **mkey, **mval;
  int nmeta;
  RbMap index, mindex; /* name -> tensor, metadata key -> entry */
  RbArena arena;
};

/* Appends a name to a message with control bytes and quotes escaped, cut at
 * 200 bytes: names come from the file and may hold anything. */
static void put_name(RbBuf *b, const char *s) {
  size_t i = 0;
  for (; s[i] && i < 200; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') rb_buf_printf(b, "\\x%02x", c);
    else rb_buf_put(b, &c, 1);
  }
  if (s[i]) rb_buf_puts(b, "...");
}

/* Reports "path: error: [tensor 'name': ]message" and returns code. */
__attribute__((format(printf, 5, 6))) static int st_fail(RbBuf *err, const char *path, const char *tensor,
                                                          int code, const char *fmt, ...) {
  if (!err) return code;
  rb_buf_printf(err, "%s: error: ", path);
  if (tensor) {
    rb_buf_puts(err, "tensor '");
    put_name(err, tensor);
    rb_buf_puts(err, "': ");
  }
  va_list ap;
  va_start(ap, fmt);
  rb_buf_vprintf(err, fmt, ap);
  va_end(ap);
  return code;
}

/* Reads a JSON number that must be an exact non-negative integer below 2^53.
 * Returns 0 when it is, else a static description of what is wrong. */
static const char *json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return "is not a number";
  double d = v->valuedouble;
  if (d != d) return "is not a number";
  if (d < 0) return "is negative";
  if (d >= (double)ST_MAX_INT) return "is too large (2^53 or more)";
  if (d != (double)(uint64_t)d) return "is not an integer";
  *out = (uint64_t)d;
  return NULL;
}

/* Appends "[d0, d1, ...]" for messages. */
static void put_shape(RbBuf *b, int rank, const int64_t *shape) {
  rb_buf_puts(b, "[");
  for (int i = 0; i < rank; i++) rb_buf_printf(b, "%s%lld", i ? ", " : "", (long long)shape[i]);
  rb_buf_puts(b, "]");
}

/* Fills t from one header entry {"dtype", "shape", "data_offsets"}; checks
 * that the offsets lie in the data section and match the shape's size.
 * begin/end get the entry's offsets for the overlap check. */
static int parse_entry(RtSafetensors *st, const cJSON *e, RtTensor *t, uint64_t data_len,
                       uint64_t *begin, uint64_t *end, RbBuf *err) {
  const char *path = st->path, *name = t->name;
  if (!cJSON_IsObject(e)) return st_fail(err, path, name, RB_EUSER, "entry is not a JSON object");
  const cJSON *dt = NULL, *shape = NULL, *offs = NULL;
  for (const cJSON *c = e->child; c; c = c->next) {
    const cJSON **slot = !strcmp(c->string, "dtype")          ? &dt
                         : !strcmp(c->string, "shape")        ? &shape
                         : !strcmp(c->string, "data_offsets") ? &offs
                                                              : NULL;
    /* Unknown keys are ignored, as the reference reader does; a repeated
     * known key is refused, since which one wins is up to the parser. */
    if (!slot) continue;
    if (*slot) return st_fail(err, path, name, RB_EUSER, "duplicate key \"%s\"", c->string);
    *slot = c;
  }
  if (!dt || !shape || !offs)
    return st_fail(err, path, name, RB_EUSER, "missing \"%s\"",
                   !dt ? "dtype" : !shape ? "shape" : "data_offsets");

  if (!cJSON_IsString(dt)) return st_fail(err, path, name, RB_EUSER, "dtype is not a string");
  int d = 0;
  while (d < RT_NDTYPE && strcmp(dt->valuestring, dtypes[d].name) != 0) d++;
  if (d == RT_NDTYPE) {
    st_fail(err, path, name, RB_EUSER, "unknown dtype \"");
    if (err) {
      put_name(err, dt->valuestring);
      rb_buf_puts(err, "\" (supported: F32 F16 BF16 I32 I64 U8 I8)");
    }
    return RB_EUSER;
  }
  t->dtype = (RtDtype)d;

  if (!cJSON_IsArray(shape)) return st_fail(err, path, name, RB_EUSER, "shape is not an array");
  int rank = 0;
  uint64_t count = 1;
  int overflow = 0;
  for (const cJSON *c = shape->child; c; c = c->next, rank++) {
    if (rank == RT_MAX_DIMS)
      return st_fail(err, path, name, RB_EUSER, "rank %d exceeds the maximum of %d",
                     cJSON_GetArraySize(shape), RT_MAX_DIMS);
    uint64_t v = 0;
    const char *why = json_uint(c, &v);
    if (why) return st_fail(err, path, name, RB_EUSER, "shape[%d] %s", rank, why);
    t->shape[rank] = (int64_t)v;
    if (__builtin_mul_overflow(count, v, &count)) overflow = 1;
  }
  t->rank = rank;
  uint64_t nbytes = 0;
  /* A zero dimension makes the product 0 whatever the others are, so an
   * overflow only counts when no dimension is 0. */
  int has_zero = 0;
  for (int i = 0; i < rank; i++) has_zero |= t->shape[i] == 0;
  if (has_zero) count = 0, overflow = 0;
  if (overflow || __builtin_mul_overflow(count, (uint64_t)dtypes[d].size, &nbytes)) {
    st_fail(err, path, name, RB_EUSER, "shape ");
    if (err) {
      put_shape(err, rank, t->shape);
      rb_buf_printf(err, " of %s overflows a 64-bit byte count", dtypes[d].name);
    }
    return RB_EUSER;
  }
  t->nbytes = nbytes;

  if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
    return st_fail(err, path, name, RB_EUSER, "data_offsets is not an array of two integers");
  const char *why = json_uint(offs->child, begin);
  if (!why) why = json_uint(offs->child->next, end);
  if (why)
    return st_fail(err, path, name, RB_EUSER, "data_offsets: an offset %s", why);
  if (*begin > *end)
    return st_fail(err, path, name, RB_EUSER, "data_offsets begin %llu > end %llu",
                   (unsigned long long)*begin, (unsigned long long)*end);
  if (*end > data_len)
    return st_fail(err, path, name, RB_EUSER,
                   "data_offsets [%llu, %llu] beyond the data section (%llu bytes; file truncated?)",
                   (unsigned long long)*begin, (unsigned long long)*end, (unsigned long long)data_len);
  if (*end - *begin != nbytes) {
    st_fail(err, path, name, RB_EUSER, "size mismatch: shape ");
    if (err) {
      put_shape(err, rank, t->shape);
      rb_buf_printf(err, " of %s needs %llu bytes, data_offsets give %llu", dtypes[d].name,
                    (unsigned long long)nbytes, (unsigned long long)(*end - *begin));
    }
    return RB_EUSER;
  }
  return RB_OK;
}

/* Reads "__metadata__": an object whose values are all strings. */
static int parse_meta(RtSafetensors *st, const cJSON *m, RbBuf *err) {
  const char *path = st->path;
  if (!cJSON_IsObject(m)) return st_fail(err, path, NULL, RB_EUSER, "__metadata__ is not a JSON object");
  int n = cJSON_GetArraySize(m);
  st->mkey = rb_arena_alloc(&st->arena, (size_t)n * sizeof *st->mkey + 1);
  st->mval = rb_arena_alloc(&st->arena, (size_t)n * sizeof *st->mval + 1);
  if (!st->mkey || !st->mval) return st_fail(err, path, NULL, RB_EINTERNAL, "out of memory");
  for (const cJSON *c = m->child; c; c = c->next) {
    if (!cJSON_IsString(c)) {
      st_fail(err, path, NULL, RB_EUSER, "__metadata__ value of '");
      if (err) {
        put_name(err, c->string);
        rb_buf_puts(err, "' is not a string");
      }
      return RB_EUSER;
    }
    if (rb_map_get(&st->mindex, c->string, NULL)) {
      st_fail(err, path, NULL, RB_EUSER, "duplicate __metadata__ key '");
      if (err) {
        put_name(err, c->string);
        rb_buf_puts(err, "'");
      }
      return RB_EUSER;
    }
    const char *k = rb_arena_strdup(&st->arena, c->string);
    const char *v = rb_arena_strdup(&st->arena, c->valuestring);
    if (!k || !v || rb_map_put(&st->mindex, k, st->nmeta) != RB_OK)
      return st_fail(err, path, NULL, RB_EINTERNAL, "out of memory");
    st->mkey[st->nmeta] = k;
    st->mval[st->nmeta++] = v;
  }
  return RB_OK;
}

typedef struct {
  uint64_t begin, end;
  int i;
} Span;

static int span_cmp(const void *a, const void *b) {
  const Span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->i - y->i;
}

/* Refuses two tensors sharing a byte: a writer bug or a crafted file, and
 * either way writing one tensor in place would corrupt the other. Empty
 * tensors own no bytes and overlap nothing. */
static int check_overlap(RtSafetensors *st, Span *s, int n, RbBuf *err) {
  qsort(s, (size_t)n, sizeof *s, span_cmp);
  int last = -1; /* the non-empty span reaching furthest so far */
  for (int k = 0; k < n; k++) {
    if (s[k].begin == s[k].end) continue;
    if (last >= 0 && s[k].begin < s[last].end) {
      st_fail(err, st->path, NULL, RB_EUSER, "tensors '");
      if (err) {
        put_name(err, st->t[s[last].i].name);
        rb_buf_puts(err, "' and '");
        put_name(err, st->t[s[k].i].name);
        rb_buf_printf(err, "' overlap (data_offsets [%llu, %llu] and [%llu, %llu])",
                      (unsigned long long)s[last].begin, (unsigned long long)s[last].end,
                      (unsigned long long)s[k].begin, (unsigned long long)s[k].end);
      }
      return RB_EUSER;
    }
    if (last < 0 || s[k].end > s[last].end) last = k;
  }
  return RB_OK;
}

/* Parses and validates the whole file held in st->base[0..size). */
static int st_parse(RtSafetensors *st, RbBuf *err) {
  const char *path = st->path;
  const unsigned char *b = st->base;
  size_t size = st->size;
  if (size < 8)
    return st_fail(err, path, NULL, RB_EUSER,
                   "file is %zu bytes, shorter than the 8-byte header length (truncated?)", size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
  if (hlen > size - 8)
    return st_fail(err, path, NULL, RB_EUSER,
                   "header length %llu runs past the end of the file (%zu bytes; truncated?)",
                   (unsigned long long)hlen, size);
  if (hlen > ST_MAX_HEADER)
    return st_fail(err, path, NULL, RB_EUSER, "header length %llu is absurd (over 100 MB)",
                   (unsigned long long)hlen);
  size_t bad = 0;
  if (!utf8_valid(b + 8, (size_t)hlen, &bad))
    return st_fail(err, path, NULL, RB_EUSER, "header is not valid UTF-8 (at header byte %zu)", bad);

  /* Parse a NUL-terminated heap copy, not the mapping: whatever cJSON might
   * read past the given length is then our padding, never unmapped memory. */
  char *text = rb_malloc((size_t)hlen + 16);
  if (!text) return st_fail(err, path, NULL, RB_EINTERNAL, "out of memory copying the header");
  memcpy(text, b + 8, (size_t)hlen);
  memset(text + hlen, 0, 16);
  pthread_once(&json_hooks_once, json_hooks_install);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0);
  int rc = RB_OK;
  Span *spans = NULL;
  if (!root) {
    size_t at = end && end >= text && end <= text + hlen ? (size_t)(end - text) : 0;
    rc = st_fail(err, path, NULL, RB_EUSER, "header is not valid JSON (near header byte %zu)", at);
    goto out;
  }
  /* The spec pads the header with spaces; anything else after the value is
   * a second value or garbage. */
  for (const char *p = end; p < text + hlen; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
      rc = st_fail(err, path, NULL, RB_EUSER, "trailing bytes after the header JSON (at header byte %zu)",
                   (size_t)(p - text));
      goto out;
    }
  if (!cJSON_IsObject(root)) {
    rc = st_fail(err, path, NULL, RB_EUSER, "header is not a JSON object");
    goto out;
  }

  uint64_t data_len = size - 8 - hlen;
  int n = 0, nmeta_entries = 0;
  for (const cJSON *c = root->child; c; c = c->next) {
    if (!strcmp(c->string, "__metadata__")) nmeta_entries++;
    else n++;
  }
  if (nmeta_entries > 1) {
    rc = st_fail(err, path, NULL, RB_EUSER, "duplicate name \"__metadata__\"");
    goto out;
  }
  st->t = rb_arena_alloc(&st->arena, (size_t)n * sizeof *st->t + 1);
  spans = rb_malloc((size_t)n * sizeof *spans + 1);
  if (!st->t || !spans) {
    rc = st_fail(err, path, NULL, RB_EINTERNAL, "out of memory");
    goto out;
  }
  for (const cJSON *c = root->child; c; c = c->next) {
    if (!strcmp(c->string, "__metadata__")) {
      if ((rc = parse_meta(st, c, err)) != RB_OK) goto out;
      continue;
    }
    RtTensor *t = &st->t[st->n];
    /* cJSON keeps every duplicate key; the map finds them in linear time. */
    if (rb_map_get(&st->index, c->string, NULL)) {
      rc = st_fail(err, path, c->string, RB_EUSER, "duplicate tensor name");
      goto out;
    }
    t->name = rb_arena_strdup(&st->arena, c->string);
    if (!t->name || rb_map_put(&st->index, t->name, st->n) != RB_OK) {
      rc = st_fail(err, path, NULL, RB_EINTERNAL, "out of memory");
      goto out;
    }
    uint64_t begin = 0, stop = 0;
    if ((rc = parse_entry(st, c, t, data_len, &begin, &stop, err)) != RB_OK) goto out;
    t->data = b + 8 + hlen + begin;
    spans[st->n] = (Span){begin, stop, st->n};
    st->n++;
  }
  rc = check_overlap(st, spans, st->n, err);
out:
  rb_free(spans);
  cJSON_Delete(root);
  rb_free(text);
  return rc;
}

/* Allocates the reader; path is copied for messages. */
static RtSafetensors *st_new(const char *path) {
  RtSafetensors *st = rb_calloc(1, sizeof *st);
  if (!st) return NULL;
  st->path = rb_arena_strdup(&st->arena, path);
  if (!st->path) {
    rb_free(st);
    return NULL;
  }
  return st;
}

/* Validates an in-memory file image; tensors point into data, which must
 * outlive the reader. name labels the messages. */
int rt_st_open_memory(const void *data, size_t size, const char *name, RtSafetensors **out, RbBuf *err) {
  *out = NULL;
  if (!name) name = "<memory>";
  RtSafetensors *st = st_new(name);
  if (!st) return st_fail(err, name, NULL, RB_EINTERNAL, "out of memory");
  st->base = data;
  st->size = data ? size : 0;
  int rc = st_parse(st, err);
  if (rc != RB_OK) {
    rt_st_close(st);
    return rc;
  }
  *out = st;
  return RB_OK;
}

/* Maps path read-only and validates it. The file must not be truncated by
 * someone else while it is open (that would fault on access, as with any
 * mapping). */
int rt_st_open(const char *path, RtSafetensors **out, RbBuf *err) {
  *out = NULL;
  /* O_NONBLOCK: opening a FIFO by mistake must not hang; it changes nothing
   * for regular files. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return st_fail(err, path, NULL, RB_EUSER, "cannot open: %s", strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return st_fail(err, path, NULL, RB_EUSER, "cannot stat: %s", strerror(e));
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return st_fail(err, path, NULL, RB_EUSER, "not a regular file");
  }
  RtSafetensors *st = st_new(path);
  if (!st) {
    close(fd);
    return st_fail(err, path, NULL, RB_EINTERNAL, "out of memory");
  }
  st->size = (size_t)sb.st_size;
  if (st->size > 0) { /* mmap refuses length 0; st_parse reports the short file */
    void *m = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      rt_st_close(st);
      return st_fail(err, path, NULL, RB_EINTERNAL, "cannot map %zu bytes: %s", (size_t)sb.st_size, strerror(e));
    }
    st->base = m;
    st->mapped = 1;
  }
  close(fd); /* the mapping keeps the file */
  int rc = st_parse(st, err);
  if (rc != RB_OK) {
    rt_st_close(st);
    return rc;
  }
  *out = st;
  return RB_OK;
}

/* Unmaps and frees; tensors from st are invalid afterwards. NULL is fine. */
void rt_st_close(RtSafetensors *st) {
  if (!st) return;
  if (st->mapped) munmap((void *)st->base, st->size);
  rb_map_free(&st->index);
  rb_map_free(&st->mindex);
  rb_arena_free(&st->arena);
  rb_free(st);
}

/* Number of tensors (the metadata entry is not one). */
int rt_st_count(const RtSafetensors *st) { return st->n; }

/* The i-th tensor in header order, or NULL when i is out of range. */
const RtTensor *rt_st_tensor(const RtSafetensors *st, int i) {
  return i >= 0 && i < st->n ? &st->t[i] : NULL;
}

/* The tensor named name, or NULL. */
const RtTensor *rt_st_find(const RtSafetensors *st, const char *name) {
  int i;
  return name && rb_map_get(&st->index, name, &i) ? &st->t[i] : NULL;
}

/* The __metadata__ value for key, or NULL. */
const char *rt_st_meta(const RtSafetensors *st, const char *key) {
  int i;
  return key && rb_map_get(&st->mindex, key, &i) ? st->mval[i] : NULL;
}

/* ==== writer ==== */

typedef struct {
  char *name;
  RtDtype dtype;
  int rank;
  int64_t shape[RT_MAX_DIMS];
  uint64_t nbytes;
  void *data;
} WTensor;

struct RtStWriter {
  WTensor *t;
  int n, cap;
  char **mkey, **mval;
  int nmeta, mcap;
  RbMap names;
  uint64_t total; /* data bytes so far */
  int status;     /* first failure of add/meta, reported by finish */
  char *error;
};

/* Creates an empty writer. */
int rt_st_writer_new(RtStWriter **out) {
  *out = rb_calloc(1, sizeof **out);
  return *out ? RB_OK : RB_EINTERNAL;
}

/* Records the first failure so that finish reports it: a caller that ignores
 * add's status must still not get a file missing a tensor. */
__attribute__((format(printf, 3, 4))) static int w_fail(RtStWriter *w, int code, const char *fmt, ...) {
  if (w->status) return code;
  w->status = code;
  RbBuf b = {0};
  va_list ap;
  va_start(ap, fmt);
  rb_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  w->error = b.data; /* NULL when out of memory: finish says so */
  return code;
}

/* Adds a tensor; data (product(shape) * dtype size bytes) is copied. Names
 * must be unique, valid UTF-8 and not "__metadata__". */
int rt_st_writer_add(RtStWriter *w, const char *name, RtDtype dt, int rank, const int64_t *shape,
                     const void *data) {
  if (!w) return RB_EINTERNAL;
  if (!name) return w_fail(w, RB_EUSER, "tensor with no name");
  if (!strcmp(name, "__metadata__")) return w_fail(w, RB_EUSER, "tensor name \"__metadata__\" is reserved");
  if (!utf8_valid((const unsigned char *)name, strlen(name), NULL))
    return w_fail(w, RB_EUSER, "tensor name is not valid UTF-8");
  if ((unsigned)dt >= RT_NDTYPE) return w_fail(w, RB_EUSER, "tensor '%s': bad dtype %d", name, (int)dt);
  if (rank < 0 || rank > RT_MAX_DIMS || (rank > 0 && !shape))
    return w_fail(w, RB_EUSER, "tensor '%s': rank %d is not 0..%d", name, rank, RT_MAX_DIMS);
  uint64_t count = 1;
  int overflow = 0, zero = 0;
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 0 || (uint64_t)shape[i] >= ST_MAX_INT)
      return w_fail(w, RB_EUSER, "tensor '%s': dimension %d is %lld (not 0..2^53)", name, i,
                    (long long)shape[i]);
    zero |= shape[i] == 0;
    if (__builtin_mul_overflow(count, (uint64_t)shape[i], &count)) overflow = 1;
  }
  if (zero) count = 0, overflow = 0;
  uint64_t nbytes, total;
  if (overflow || __builtin_mul_overflow(count, (uint64_t)dtypes[dt].size, &nbytes) ||
      __builtin_add_overflow(w->total, nbytes, &total) || total >= ST_MAX_INT || nbytes > SIZE_MAX)
    return w_fail(w, RB_EUSER, "tensor '%s': too large", name);
  if (nbytes && !data) return w_fail(w, RB_EUSER, "tensor '%s': no data", name);
  if (rb_map_get(&w->names, name, NULL)) return w_fail(w, RB_EUSER, "duplicate tensor name '%s'", name);

  if (w->n == w->cap) {
    int cap = w->cap ? w->cap * 2 : 16;
    WTensor *t = rb_realloc(w->t, (size_t)cap * sizeof *t);
    if (!t) return w_fail(w, RB_EINTERNAL, "out of memory");
    w->t = t;
    w->cap = cap;
  }
  WTensor *t = &w->t[w->n];
  memset(t, 0, sizeof *t);
  t->name = rb_strdup(name);
  t->data = rb_malloc((size_t)nbytes);
  if (!t->name || !t->data || rb_map_put(&w->names, t->name, w->n) != RB_OK) {
    rb_free(t->name);
    rb_free(t->data);
    return w_fail(w, RB_EINTERNAL, "out of memory copying tensor '%s' (%llu bytes)", name,
                  (unsigned long long)nbytes);
  }
  if (nbytes) memcpy(t->data, data, (size_t)nbytes);
  t->dtype = dt;
  t->rank = rank;
  for (int i = 0; i < rank; i++) t->shape[i] = shape[i];
  t->nbytes = nbytes;
  w->total = total;
  w->n++;
  return RB_OK;
}

/* Sets a __metadata__ entry; a key set twice keeps the last value. */
int rt_st_writer_meta(RtStWriter *w, const char *key, const char *value) {
  if (!w) return RB_EINTERNAL;
  if (!key || !value) return w_fail(w, RB_EUSER, "metadata with no key or value");
  if (!utf8_valid((const unsigned char *)key, strlen(key), NULL) ||
      !utf8_valid((const unsigned char *)value, strlen(value), NULL))
    return w_fail(w, RB_EUSER, "metadata '%s' is not valid UTF-8", key);
  char *v = rb_strdup(value);
  if (!v) return w_fail(w, RB_EINTERNAL, "out of memory");
  for (int i = 0; i < w->nmeta; i++)
    if (!strcmp(w->mkey[i], key)) {
      rb_free(w->mval[i]);
      w->mval[i] = v;
      return RB_OK;
    }
  if (w->nmeta == w->mcap) {
    int cap = w->mcap ? w->mcap * 2 : 8;
    char **k = rb_realloc(w->mkey, (size_t)cap * sizeof *k);
    if (k) w->mkey = k;
    char **vv = k ? rb_realloc(w->mval, (size_t)cap * sizeof *vv) : NULL;
    if (vv) w->mval = vv;
    if (!k || !vv) {
      rb_free(v);
      return w_fail(w, RB_EINTERNAL, "out of memory");
    }
    w->mcap = cap;
  }
  char *k = rb_strdup(key);
  if (!k) {
    rb_free(v);
    return w_fail(w, RB_EINTERNAL, "out of memory");
  }
  w->mkey[w->nmeta] = k;
  w->mval[w->nmeta++] = v;
  return RB_OK;
}

/* Frees the writer and its copies without writing. NULL is fine. */
void rt_st_writer_free(RtStWriter *w) {
  if (!w) return;
  for (int i = 0; i < w->n; i++) {
    rb_free(w->t[i].name);
    rb_free(w->t[i].data);
  }
  for (int i = 0; i < w->nmeta; i++) {
    rb_free(w->mkey[i]);
    rb_free(w->mval[i]);
  }
  rb_free(w->t);
  rb_free(w->mkey);
  rb_free(w->mval);
  rb_map_free(&w->names);
  rb_free(w->error);
  rb_free(w);
}

/* Builds the header, written by hand rather than by cJSON: cJSON prints
 * integers past 10^15 in exponent form, which strict readers refuse. */
static void build_header(const RtStWriter *w, RbBuf *h) {
  rb_buf_puts(h, "{");
  int first = 1;
  if (w->nmeta) {
    rb_buf_puts(h, "\"__metadata__\":{");
    for (int i = 0; i < w->nmeta; i++) {
      if (i) rb_buf_puts(h, ",");
      rb_buf_json_str(h, w->mkey[i]);
      rb_buf_puts(h, ":");
      rb_buf_json_str(h, w->mval[i]);
    }
    rb_buf_puts(h, "}");
    first = 0;
  }
  uint64_t off = 0;
  for (int i = 0; i < w->n; i++) {
    const WTensor *t = &w->t[i];
    if (!first) rb_buf_puts(h, ",");
    first = 0;
    rb_buf_json_str(h, t->name);
    rb_buf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", dtypes[t->dtype].name);
    for (int d = 0; d < t->rank; d++) rb_buf_printf(h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    rb_buf_printf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                  (unsigned long long)(off + t->nbytes));
    off += t->nbytes;
  }
  rb_buf_puts(h, "}");
  /* Spaces up to a multiple of 8, so that the data section starts 8-aligned
   * in the file (and in the mapping). */
  /* One put, not a loop until aligned: an out-of-memory buffer drops
   * writes and would never become aligned. */
  rb_buf_put(h, "       ", (8 - h->len % 8) % 8);
}



/* Writes every tensor added to path (temp file in the same directory, fsync,
 * rename) and frees w. On failure nothing is left at path or beside it, and
 * err names the path and the system's reason. */
int rt_st_writer_finish(RtStWriter *w, const char *path, RbBuf *err) {
  if (!w) return st_fail(err, path ? path : "?", NULL, RB_EINTERNAL, "no writer");
  if (!path) {
    rt_st_writer_free(w);
    return st_fail(err, "?", NULL, RB_EINTERNAL, "no output path");
  }
  if (w->status) {
    int rc = st_fail(err, path, NULL, w->status, "%s", w->error ? w->error : "out of memory");
    rt_st_writer_free(w);
    return rc;
  }
  RbBuf h = {0};
  build_header(w, &h);
  const void **parts = rb_malloc(((size_t)w->n + 2) * sizeof *parts);
  size_t *lens = rb_malloc(((size_t)w->n + 2) * sizeof *lens);
  if (h.oom || !parts || !lens) {
    rb_buf_free(&h);
    rb_free(parts);
    rb_free(lens);
    rt_st_writer_free(w);
    return st_fail(err, path, NULL, RB_EINTERNAL, "out of memory building the header");
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
  parts[0] = len8, lens[0] = 8;
  parts[1] = h.data, lens[1] = h.len;
  for (int i = 0; i < w->n; i++) parts[i + 2] = w->t[i].data, lens[i + 2] = (size_t)w->t[i].nbytes;
  RbBuf why = {0};
  int code = rb_write_atomic(path, parts, lens, w->n + 2, &why);
  if (code) st_fail(err, path, NULL, code, "%s", why.data ? why.data : "cannot write");
  rb_buf_free(&why);
  rb_buf_free(&h);
  rb_free(parts);
  rb_free(lens);
  rt_st_writer_free(w);
  return code;
}

float rt_tensor_f32(const RtTensor *t, size_t i) {
  const unsigned char *p = t->data;
  if (t->dtype == RT_F32) {
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
  }
  uint16_t u;
  memcpy(&u, p + 2 * i, 2);
  return t->dtype == RT_F16 ? rb_f32_from_f16(u) : rb_f32_from_bf16(u);
}

size_t rt_tensor_count(const RtTensor *t) {
  size_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= (size_t)t->shape[i];
  return n;
}
