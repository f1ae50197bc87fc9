/* gguf.c: llama.cpp's GGUF model files, mapped read-only and validated
 * before anything is trusted: every count, length and offset is checked
 * against the bytes that remain, so a hostile file is an error, never a huge
 * allocation or an out-of-bounds read. Also the ggml block dequantizers the
 * importer needs and the undoing of llama.cpp's Q/K row permutation. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/formats/formats.h"

/* File layout (all little-endian; v2 and v3 are identical, v3 only adds
 * big-endian files, which announce themselves by a byte-swapped version):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x { string key, u32 type, value }
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   padding to general.alignment (default 32), then the tensor data;
 *   a tensor's offset is relative to the data start and a multiple of the alignment.
 * string = u64 length + bytes (no NUL); array = u32 elem type, u64 count, elems. */

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NESTING 8     /* arrays of arrays; bounded so recursion is too */
#define GGUF_MAX_NAME 65535    /* keys and tensor names: sane messages, no giant copies */
#define GGUF_MAX_ALIGNMENT (1u << 20)

/* ---- the ggml type table ---- */

typedef struct {
  const char *name;
  uint32_t block;  /* values per block */
  uint32_t bytes;  /* bytes per block */
} GgmlType;

/* Sizes from ggml's block structs. Types whose size we know can be opened
 * (and skipped) even when rt_gguf_dequant cannot convert them. */
static const GgmlType ggml_types[] = {
    [0] = {"F32", 1, 4},       [1] = {"F16", 1, 2},       [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},    [6] = {"Q5_0", 32, 22},    [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},    [9] = {"Q8_1", 32, 36},    [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110}, [12] = {"Q4_K", 256, 144}, [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210}, [15] = {"Q8_K", 256, 292}, [20] = {"IQ4_NL", 32, 18},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},     [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},      [27] = {"I64", 1, 8},      [28] = {"F64", 1, 8},
    [30] = {"BF16", 1, 2},
};
enum { N_GGML_TYPES = sizeof ggml_types / sizeof ggml_types[0] };

static const GgmlType *ggml_type(uint32_t t) {
  return t < N_GGML_TYPES && ggml_types[t].name ? &ggml_types[t] : NULL;
}

/* Contract: a static name for any type number ("type 77" for unknown ones,
 * from a small rotating buffer, good for one message). */
const char *rt_ggml_type_name(int t) {
  if (t >= 0 && ggml_type((uint32_t)t)) return ggml_types[t].name;
  static _Thread_local char buf[4][24];
  static _Thread_local int next;
  char *b = buf[next++ & 3];
  snprintf(b, sizeof buf[0], "type %d", t);
  return b;
}

static const char *const value_type_names[] = {"uint8", "int8",   "uint16", "int16", "uint32",
                                               "int32", "float32", "bool",  "string", "array",
                                               "uint64", "int64", "float64"};
static const uint8_t value_type_size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
enum { N_VALUE_TYPES = 13 };

/* ---- the handle ---- */

typedef struct {
  const char *s;
  size_t len;
} GStr;

typedef struct {
  const char *key;
  uint32_t type;
  const uint8_t *val;  /* scalars and numeric array elements, in the file */
  uint32_t elem_type;  /* arrays */
  uint64_t count;      /* arrays */
  GStr str;            /* strings */
  GStr *strs;          /* arrays of strings, count entries */
} GKv;

struct RtGguf {
  char *path;
  const uint8_t *base;
  size_t size;
  size_t map_len; /* nonzero when base is our mmap */
  int version;
  uint64_t alignment, data_off;
  int nkv, ntensors;
  GKv *kv;
  RtGgufTensor *tensors;
  RbMap kv_map, tensor_map;
  RbArena arena;
};

/* ---- the cursor: every read is bounds-checked ---- */

typedef struct {
  const uint8_t *p;
  uint64_t size, pos;
  RtGguf *g;
  RbBuf *err;
  int rc;         /* first error: RB_EUSER or RB_EINTERNAL */
  char ctx[160];  /* what is being read, for messages */
} Cur;

static void fail(Cur *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(Cur *c, int rc, const char *fmt, ...) {
  if (c->rc) return; /* the first error is the one that explains the rest */
  c->rc = rc;
  if (!c->err) return;
  rb_buf_printf(c->err, "%s: error: ", c->g->path);
  if (c->ctx[0]) rb_buf_printf(c->err, "%s: ", c->ctx);
  va_list ap;
  va_start(ap, fmt);
  rb_buf_vprintf(c->err, fmt, ap);
  va_end(ap);
  rb_buf_puts(c->err, "\n");
}

static uint64_t remaining(const Cur *c) { return c->size - c->pos; }

/* True when n more bytes exist; else records a truncation error naming what. */
static int need(Cur *c, uint64_t n, const char *what) {
  if (c->rc) return 0;
  if (n > remaining(c)) {
    fail(c, RB_EUSER, "file truncated: %s needs %" PRIu64 " bytes at offset %" PRIu64
         ", but the file has %" PRIu64 " bytes", what, n, c->pos, c->size);
    return 0;
  }
  return 1;
}

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static int get32(Cur *c, uint32_t *v, const char *what) {
  if (!need(c, 4, what)) return 0;
  *v = rd32(c->p + c->pos);
  c->pos += 4;
  return 1;
}

static int get64(Cur *c, uint64_t *v, const char *what) {
  if (!need(c, 8, what)) return 0;
  *v = rd64(c->p + c->pos);
  c->pos += 8;
  return 1;
}

/* A GGUF string: u64 length, bytes. The length is checked against what is
 * left before anything is copied, so a huge length is a clear error. */
static int get_str(Cur *c, GStr *s, uint64_t max, const char *what) {
  uint64_t n;
  if (!get64(c, &n, what)) return 0;
  if (n > remaining(c)) {
    fail(c, RB_EUSER, "%s length %" PRIu64 " runs past the end of the file (%" PRIu64
         " bytes left at offset %" PRIu64 ")", what, n, remaining(c), c->pos);
    return 0;
  }
  if (n > max) {
    fail(c, RB_EUSER, "%s length %" PRIu64 " exceeds the limit of %" PRIu64, what, n, max);
    return 0;
  }
  char *copy = rb_arena_strndup(&c->g->arena, (const char *)c->p + c->pos, (size_t)n);
  if (!copy) {
    fail(c, RB_EINTERNAL, "out of memory");
    return 0;
  }
  s->s = copy;
  s->len = (size_t)n;
  c->pos += n;
  return 1;
}

/* A name that becomes a C string: NUL bytes would make two names equal. */
static int get_name(Cur *c, GStr *s, const char *what) {
  if (!get_str(c, s, GGUF_MAX_NAME, what)) return 0;
  if (memchr(s->s, 0, s->len)) {
    fail(c, RB_EUSER, "%s contains a NUL byte", what);
    return 0;
  }
  if (s->len == 0) {
    fail(c, RB_EUSER, "%s is empty", what);
    return 0;
  }
  return 1;
}

/* ---- metadata values ---- */

/* Skip (validating) an array body of count elements of type t, nested
 * depth levels deep. Each element's minimum size is checked against what is
 * left before looping, so a huge count fails at once instead of spinning. */
static int skip_array(Cur *c, uint32_t t, uint64_t count, int depth) {
  if (t >= N_VALUE_TYPES) {
    fail(c, RB_EUSER, "array element type %" PRIu32 " is not a GGUF value type", t);
    return 0;
  }
  uint64_t min = t == RT_GGUF_STRING ? 8 : t == RT_GGUF_ARRAY ? 12 : value_type_size[t];
  if (count > remaining(c) / min) {
    fail(c, RB_EUSER, "array of %" PRIu64 " %s values cannot fit in the %" PRIu64
         " bytes left at offset %" PRIu64, count, value_type_names[t], remaining(c), c->pos);
    return 0;
  }
  if (t != RT_GGUF_STRING && t != RT_GGUF_ARRAY) {
    c->pos += count * min;
    return 1;
  }
  if (t == RT_GGUF_ARRAY && depth >= GGUF_MAX_NESTING) {
    fail(c, RB_EUSER, "arrays nested more than %d deep", GGUF_MAX_NESTING);
    return 0;
  }
  for (uint64_t i = 0; i < count; i++) {
    uint64_t n;
    if (t == RT_GGUF_STRING) {
      if (!get64(c, &n, "string in array")) return 0;
      if (n > remaining(c)) {
        fail(c, RB_EUSER, "string %" PRIu64 " of the array: length %" PRIu64
             " runs past the end of the file", i, n);
        return 0;
      }
      c->pos += n;
    } else {
      uint32_t et;
      if (!get32(c, &et, "nested array type") || !get64(c, &n, "nested array count")) return 0;
      if (!skip_array(c, et, n, depth + 1)) return 0;
    }
  }
  return 1;
}

/* One metadata entry's value into kv. Strings are copied NUL-terminated;
 * numeric arrays stay in the file and are read on access. */
static int get_value(Cur *c, GKv *kv) {
  uint32_t t = kv->type;
  if (t >= N_VALUE_TYPES) {
    fail(c, RB_EUSER, "unknown value type %" PRIu32, t);
    return 0;
  }
  if (t == RT_GGUF_STRING) return get_str(c, &kv->str, UINT64_MAX, "string value");
  if (t != RT_GGUF_ARRAY) {
    if (!need(c, value_type_size[t], value_type_names[t])) return 0;
    kv->val = c->p + c->pos;
    c->pos += value_type_size[t];
    return 1;
  }
  if (!get32(c, &kv->elem_type, "array element type") || !get64(c, &kv->count, "array count"))
    return 0;
  uint64_t start = c->pos;
  if (!skip_array(c, kv->elem_type, kv->count, 1)) return 0;
  kv->val = c->p + start;
  if (kv->elem_type != RT_GGUF_STRING) return 1;
  /* Strings by index need an index; the skip above proved count <= size/8,
   * so this allocation is bounded by the file. */
  kv->strs = rb_arena_alloc(&c->g->arena, (size_t)kv->count * sizeof *kv->strs);
  if (!kv->strs) {
    fail(c, RB_EINTERNAL, "out of memory");
    return 0;
  }
  uint64_t end = c->pos;
  c->pos = start;
  for (uint64_t i = 0; i < kv->count; i++)
    if (!get_str(c, &kv->strs[i], UINT64_MAX, "string in array")) return 0;
  if (c->pos != end) fail(c, RB_EINTERNAL, "string array re-read disagrees"); /* cannot happen */
  return !c->rc;
}

/* ---- tensor infos ---- */

static int mul_ok(uint64_t a, uint64_t b, uint64_t *r) {
  if (a && b > UINT64_MAX / a) return 0;
  *r = a * b;
  return 1;
}

static int get_tensor(Cur *c, int idx, RtGgufTensor *t) {
  GStr name;
  snprintf(c->ctx, sizeof c->ctx, "tensor info %d", idx);
  if (!get_name(c, &name, "tensor name")) return 0;
  t->name = name.s;
  t->file = c->g->path;
  snprintf(c->ctx, sizeof c->ctx, "tensor '%.100s'", name.s);
  if (rb_map_get(&c->g->tensor_map, t->name, NULL)) {
    fail(c, RB_EUSER, "duplicate tensor name");
    return 0;
  }
  uint32_t nd, type;
  if (!get32(c, &nd, "n_dims")) return 0;
  if (nd < 1 || nd > RT_MAX_DIMS) {
    fail(c, RB_EUSER, "n_dims %" PRIu32 " is not in 1..%d", nd, RT_MAX_DIMS);
    return 0;
  }
  t->rank = (int)nd;
  uint64_t nel = 1;
  for (int d = 0; d < RT_MAX_DIMS; d++) {
    uint64_t ne = 1;
    if ((uint32_t)d < nd && !get64(c, &ne, "dimension")) return 0;
    if (ne == 0) {
      fail(c, RB_EUSER, "dimension %d is zero", d);
      return 0;
    }
    if (ne > INT64_MAX || !mul_ok(nel, ne, &nel) || nel > INT64_MAX) {
      fail(c, RB_EUSER, "dimension %d (%" PRIu64 ") makes the element count overflow", d, ne);
      return 0;
    }
    t->ne[d] = (int64_t)ne;
  }
  if (!get32(c, &type, "ggml type")) return 0;
  const GgmlType *gt = ggml_type(type);
  if (!gt) {
    fail(c, RB_EUSER, "unknown or unsupported ggml type %" PRIu32, type);
    return 0;
  }
  t->ggml_type = (int)type;
  if ((uint64_t)t->ne[0] % gt->block) {
    fail(c, RB_EUSER, "ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRIu32,
         t->ne[0], gt->name, gt->block);
    return 0;
  }
  uint64_t rows = nel / (uint64_t)t->ne[0], row_bytes = (uint64_t)t->ne[0] / gt->block * gt->bytes;
  if (!mul_ok(rows, row_bytes, &t->nbytes)) {
    fail(c, RB_EUSER, "byte size overflows");
    return 0;
  }
  uint64_t off;
  if (!get64(c, &off, "data offset")) return 0;
  t->data = (const void *)(uintptr_t)off; /* resolved once the data start is known */
  return 1;
}

/* ---- overlap ---- */

typedef struct {
  uint64_t begin, end; /* [begin, end) in the data section */
  int i;               /* the tensor */
} Span;

static int span_cmp(const void *a, const void *b) {
  const Span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

/* Refuses two tensors sharing a byte, as the safetensors reader does: a
 * writer bug or a crafted file, and either way one tensor's bytes would be
 * read as another's. Sorted by offset, each tensor is checked against the one
 * reaching furthest before it, so a short tensor lying inside a long one is
 * caught even with others between them. Every tensor here has nbytes > 0
 * (dimensions are nonzero), and its span is in bounds (checked above). */
static int check_overlap(Cur *c) {
  RtGguf *g = c->g;
  if (g->ntensors < 2) return RB_OK;
  Span *s = rb_malloc((size_t)g->ntensors * sizeof *s);
  if (!s) {
    fail(c, RB_EINTERNAL, "out of memory");
    return c->rc;
  }
  for (int i = 0; i < g->ntensors; i++) {
    uint64_t off = (uint64_t)((const uint8_t *)g->tensors[i].data - (g->base + g->data_off));
    s[i] = (Span){off, off + g->tensors[i].nbytes, i};
  }
  qsort(s, (size_t)g->ntensors, sizeof *s, span_cmp);
  int last = 0; /* the span reaching furthest so far */
  for (int k = 1; k < g->ntensors; k++) {
    if (s[k].begin < s[last].end) {
      const Span *a = &s[last], *b = &s[k];
      fail(c, RB_EUSER, "tensors '%.100s' and '%.100s' overlap (bytes [%" PRIu64 ", %" PRIu64
           ") and [%" PRIu64 ", %" PRIu64 ") of the data section)", g->tensors[a->i].name,
           g->tensors[b->i].name, a->begin, a->end, b->begin, b->end);
      break;
    }
    if (s[k].end > s[last].end) last = k;
  }
  rb_free(s);
  return c->rc;
}

/* ---- open ---- */

static int parse(RtGguf *g, RbBuf *err) {
  Cur c = {g->base, g->size, 0, g, err, 0, ""};
  uint32_t version;
  uint64_t ntensors, nkv;
  if (!need(&c, 4, "magic")) return c.rc;
  if (memcmp(g->base, "GGUF", 4) != 0) {
    fail(&c, RB_EUSER, "not a GGUF file (bad magic %02x %02x %02x %02x, want \"GGUF\")",
         g->base[0], g->base[1], g->base[2], g->base[3]);
    return c.rc;
  }
  c.pos = 4;
  if (!get32(&c, &version, "version")) return c.rc;
  if (version != 2 && version != 3) {
    if (version == 0x02000000u || version == 0x03000000u)
      fail(&c, RB_EUSER, "big-endian GGUF files are not supported");
    else if (version == 1)
      fail(&c, RB_EUSER, "GGUF version 1 is obsolete (32-bit counts); re-convert the model");
    else
      fail(&c, RB_EUSER, "unsupported GGUF version %" PRIu32 " (want 2 or 3)", version);
    return c.rc;
  }
  g->version = (int)version;
  if (!get64(&c, &ntensors, "tensor count") || !get64(&c, &nkv, "metadata count")) return c.rc;
  /* Minimum sizes: a kv is key(8+1) + type(4) + value(1); a tensor info is
   * name(8+1) + n_dims(4) + ne(8) + type(4) + offset(8). */
  if (nkv > remaining(&c) / 14 || nkv > INT32_MAX) {
    fail(&c, RB_EUSER, "metadata count %" PRIu64 " cannot fit in a file of %" PRIu64 " bytes",
         nkv, c.size);
    return c.rc;
  }
  if (ntensors > remaining(&c) / 33 || ntensors > INT32_MAX) {
    fail(&c, RB_EUSER, "tensor count %" PRIu64 " cannot fit in a file of %" PRIu64 " bytes",
         ntensors, c.size);
    return c.rc;
  }
  g->kv = rb_calloc((size_t)nkv + 1, sizeof *g->kv);
  g->tensors = rb_calloc((size_t)ntensors + 1, sizeof *g->tensors);
  if (!g->kv || !g->tensors) {
    fail(&c, RB_EINTERNAL, "out of memory");
    return c.rc;
  }
  g->alignment = GGUF_DEFAULT_ALIGNMENT;
  for (uint64_t i = 0; i < nkv; i++) {
    GKv *kv = &g->kv[i];
    GStr key;
    snprintf(c.ctx, sizeof c.ctx, "metadata entry %" PRIu64, i);
    if (!get_name(&c, &key, "key")) return c.rc;
    kv->key = key.s;
    snprintf(c.ctx, sizeof c.ctx, "metadata key '%.100s'", key.s);
    if (rb_map_get(&g->kv_map, kv->key, NULL)) {
      fail(&c, RB_EUSER, "duplicate key");
      return c.rc;
    }
    if (!get32(&c, &kv->type, "value type") || !get_value(&c, kv)) return c.rc;
    if (rb_map_put(&g->kv_map, kv->key, (int)i) != RB_OK) {
      fail(&c, RB_EINTERNAL, "out of memory");
      return c.rc;
    }
    g->nkv = (int)i + 1;
    if (!strcmp(kv->key, "general.alignment")) {
      /* llama.cpp writes it as uint32; anything else is a broken file. */
      if (kv->type != RT_GGUF_U32) {
        fail(&c, RB_EUSER, "must be uint32, not %s", value_type_names[kv->type]);
        return c.rc;
      }
      uint32_t a = rd32(kv->val);
      if (a == 0 || (a & (a - 1)) || a > GGUF_MAX_ALIGNMENT) {
        fail(&c, RB_EUSER, "alignment %" PRIu32 " is not a power of two up to %u", a,
             GGUF_MAX_ALIGNMENT);
        return c.rc;
      }
      g->alignment = a;
    }
  }
  for (uint64_t i = 0; i < ntensors; i++) {
    if (!get_tensor(&c, (int)i, &g->tensors[i])) return c.rc;
    if (rb_map_put(&g->tensor_map, g->tensors[i].name, (int)i) != RB_OK) {
      fail(&c, RB_EINTERNAL, "out of memory");
      return c.rc;
    }
    g->ntensors = (int)i + 1;
  }
  c.ctx[0] = 0;
  /* The data section starts at the next multiple of the alignment. */
  g->data_off = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
  if (ntensors && g->data_off > c.size) {
    fail(&c, RB_EUSER, "file truncated: the tensor data would start at offset %" PRIu64
         ", past the end (%" PRIu64 " bytes)", g->data_off, c.size);
    return c.rc;
  }
  for (int i = 0; i < g->ntensors; i++) {
    RtGgufTensor *t = &g->tensors[i];
    uint64_t off = (uint64_t)(uintptr_t)t->data;
    snprintf(c.ctx, sizeof c.ctx, "tensor '%.100s'", t->name);
    if (off % g->alignment) {
      fail(&c, RB_EUSER, "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
           off, g->alignment);
      return c.rc;
    }
    uint64_t avail = c.size - g->data_off;
    if (off > avail || t->nbytes > avail - off) {
      fail(&c, RB_EUSER, "data (%" PRIu64 " bytes at data offset %" PRIu64
           ") runs past the end of the file (%" PRIu64 " bytes of data)", t->nbytes, off, avail);
      return c.rc;
    }
    t->data = g->base + g->data_off + off;
  }
  c.ctx[0] = 0;
  return check_overlap(&c);
}

static int open_common(RtGguf *g, RtGguf **out, RbBuf *err) {
  int rc = parse(g, err);
  if (rc != RB_OK) {
    rt_gguf_close(g);
    return rc;
  }
  *out = g;
  return RB_OK;
}

/* Contract: validate bytes in memory as a GGUF file; the bytes must outlive
 * the handle. RB_OK with *out set, else an error and *out = NULL. */
int rt_gguf_open_memory(const void *data, size_t size, const char *name, RtGguf **out,
                        RbBuf *err) {
  *out = NULL;
  RtGguf *g = rb_calloc(1, sizeof *g);
  if (!g || !(g->path = rb_strdup(name ? name : "<memory>"))) {
    rb_free(g);
    if (err) rb_buf_printf(err, "%s: error: out of memory\n", name ? name : "<memory>");
    return RB_EINTERNAL;
  }
  static const uint8_t empty[1];
  g->base = size ? data : empty;
  g->size = size;
  return open_common(g, out, err);
}

/* Contract: map path read-only and validate it. RB_OK with *out set; else
 * RB_EUSER (unreadable or bad file) or RB_EINTERNAL, a message in err. */
int rt_gguf_open(const char *path, RtGguf **out, RbBuf *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (err) rb_buf_printf(err, "%s: error: cannot open: %s\n", path, strerror(errno));
    return RB_EUSER;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (err) rb_buf_printf(err, "%s: error: not a regular file\n", path);
    close(fd);
    return RB_EUSER;
  }
  if (st.st_size < 4) {
    close(fd);
    if (err) rb_buf_printf(err, "%s: error: not a GGUF file (%lld bytes)\n", path,
                           (long long)st.st_size);
    return RB_EUSER;
  }
  void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd); /* the mapping keeps the file */
  if (map == MAP_FAILED) {
    if (err) rb_buf_printf(err, "%s: error: cannot map: %s\n", path, strerror(errno));
    return RB_EUSER;
  }
  RtGguf *g = rb_calloc(1, sizeof *g);
  if (!g || !(g->path = rb_strdup(path))) {
    rb_free(g);
    munmap(map, (size_t)st.st_size);
    if (err) rb_buf_printf(err, "%s: error: out of memory\n", path);
    return RB_EINTERNAL;
  }
  g->base = map;
  g->size = g->map_len = (size_t)st.st_size;
  return open_common(g, out, err);
}

/* Contract: frees everything; the tensors' data pointers die with it. NULL ok. */
void rt_gguf_close(RtGguf *g) {
  if (!g) return;
  if (g->map_len) munmap((void *)(uintptr_t)g->base, g->map_len);
  rb_map_free(&g->kv_map);
  rb_map_free(&g->tensor_map);
  rb_arena_free(&g->arena);
  rb_free(g->kv);
  rb_free(g->tensors);
  rb_free(g->path);
  rb_free(g);
}

int rt_gguf_version(const RtGguf *g) { return g->version; }
int rt_gguf_count(const RtGguf *g) { return g->ntensors; }

/* Contract: tensor i in file order, NULL when out of range. */
const RtGgufTensor *rt_gguf_tensor(const RtGguf *g, int i) {
  return i >= 0 && i < g->ntensors ? &g->tensors[i] : NULL;
}

const RtGgufTensor *rt_gguf_find(const RtGguf *g, const char *name) {
  int i;
  return rb_map_get(&g->tensor_map, name, &i) ? &g->tensors[i] : NULL;
}

int rt_gguf_kv_count(const RtGguf *g) { return g->nkv; }

/* Contract: key i in file order (NULL when out of range); *type its value type. */
const char *rt_gguf_kv_key(const RtGguf *g, int i, int *type) {
  if (i < 0 || i >= g->nkv) return NULL;
  if (type) *type = (int)g->kv[i].type;
  return g->kv[i].key;
}

/* ---- metadata access ---- */

static const GKv *find_kv(const RtGguf *g, const char *key) {
  int i;
  return rb_map_get(&g->kv_map, key, &i) ? &g->kv[i] : NULL;
}

/* A numeric scalar at p of type t as either an integer or a float. Returns
 * 1 for integers (*i, *neg when negative), 2 for floats (*f), 0 otherwise. */
static int read_num(uint32_t t, const uint8_t *p, uint64_t *i, int *neg, double *f) {
  *neg = 0;
  switch (t) {
  case RT_GGUF_U8: *i = p[0]; return 1;
  case RT_GGUF_BOOL: *i = p[0] != 0; return 1;
  case RT_GGUF_I8: { int8_t v = (int8_t)p[0]; *neg = v < 0; *i = (uint64_t)(int64_t)v; return 1; }
  case RT_GGUF_U16: *i = rd16(p); return 1;
  case RT_GGUF_I16: { int16_t v = (int16_t)rd16(p); *neg = v < 0; *i = (uint64_t)(int64_t)v; return 1; }
  case RT_GGUF_U32: *i = rd32(p); return 1;
  case RT_GGUF_I32: { int32_t v = (int32_t)rd32(p); *neg = v < 0; *i = (uint64_t)(int64_t)v; return 1; }
  case RT_GGUF_U64: *i = rd64(p); return 1;
  case RT_GGUF_I64: { int64_t v = (int64_t)rd64(p); *neg = v < 0; *i = (uint64_t)v; return 1; }
  case RT_GGUF_F32: { uint32_t b = rd32(p); float v; memcpy(&v, &b, 4); *f = v; return 2; }
  case RT_GGUF_F64: { uint64_t b = rd64(p); memcpy(f, &b, 8); return 2; }
  default: return 0;
  }
}

static double as_double(uint64_t i, int neg) { return neg ? (double)(int64_t)i : (double)i; }

/* Contract: 1 with *out when key is a non-negative integer or a bool. */
int rt_gguf_u64(const RtGguf *g, const char *key, uint64_t *out) {
  const GKv *kv = find_kv(g, key);
  uint64_t i;
  int neg;
  double f;
  if (!kv || kv->type == RT_GGUF_ARRAY || kv->type == RT_GGUF_STRING) return 0;
  if (read_num(kv->type, kv->val, &i, &neg, &f) != 1 || neg) return 0;
  *out = i;
  return 1;
}

/* Contract: 1 with *out when key is any float or integer scalar. */
int rt_gguf_f64(const RtGguf *g, const char *key, double *out) {
  const GKv *kv = find_kv(g, key);
  uint64_t i;
  int neg;
  double f;
  if (!kv || kv->type == RT_GGUF_ARRAY || kv->type == RT_GGUF_STRING) return 0;
  int k = read_num(kv->type, kv->val, &i, &neg, &f);
  if (!k) return 0;
  *out = k == 2 ? f : as_double(i, neg);
  return 1;
}

/* Contract: 1 with *out (NUL-terminated, alive until close) for a string key. */
int rt_gguf_str(const RtGguf *g, const char *key, const char **out, size_t *len) {
  const GKv *kv = find_kv(g, key);
  if (!kv || kv->type != RT_GGUF_STRING) return 0;
  *out = kv->str.s;
  if (len) *len = kv->str.len;
  return 1;
}

int rt_gguf_arr(const RtGguf *g, const char *key, int *elem_type, uint64_t *count) {
  const GKv *kv = find_kv(g, key);
  if (!kv || kv->type != RT_GGUF_ARRAY) return 0;
  if (elem_type) *elem_type = (int)kv->elem_type;
  if (count) *count = kv->count;
  return 1;
}

int rt_gguf_arr_str(const RtGguf *g, const char *key, uint64_t i, const char **out, size_t *len) {
  const GKv *kv = find_kv(g, key);
  if (!kv || kv->type != RT_GGUF_ARRAY || kv->elem_type != RT_GGUF_STRING || i >= kv->count)
    return 0;
  *out = kv->strs[i].s;
  if (len) *len = kv->strs[i].len;
  return 1;
}

/* Element i of a numeric array: 1 integer, 2 float, 0 not numeric/out of range. */
static int arr_num(const RtGguf *g, const char *key, uint64_t i, uint64_t *v, int *neg, double *f) {
  const GKv *kv = find_kv(g, key);
  if (!kv || kv->type != RT_GGUF_ARRAY || i >= kv->count) return 0;
  uint32_t t = kv->elem_type;
  if (t == RT_GGUF_STRING || t == RT_GGUF_ARRAY) return 0;
  return read_num(t, kv->val + i * value_type_size[t], v, neg, f);
}

/* Contract: 1 with element i of an integer (or bool) array that fits int64. */
int rt_gguf_arr_i64(const RtGguf *g, const char *key, uint64_t i, int64_t *out) {
  uint64_t v;
  int neg;
  double f;
  if (arr_num(g, key, i, &v, &neg, &f) != 1) return 0;
  if (!neg && v > INT64_MAX) return 0;
  *out = (int64_t)v;
  return 1;
}

/* Contract: 1 with element i of any numeric array as a double. */
int rt_gguf_arr_f64(const RtGguf *g, const char *key, uint64_t i, double *out) {
  uint64_t v;
  int neg;
  double f;
  int k = arr_num(g, key, i, &v, &neg, &f);
  if (!k) return 0;
  *out = k == 2 ? f : as_double(v, neg);
  return 1;
}

/* ---- dequantization (ggml's block layouts) ---- */

static float h2f(const uint8_t *p) { return rb_f32_from_f16(rd16(p)); }

/* Q8_0: {f16 d; int8 q[32]}: x = d * q. */
static void deq_q8_0(const uint8_t *b, float *y) {
  float d = h2f(b);
  for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)b[2 + j];
}

/* Q4_0: {f16 d; u8 qs[16]}: low nibbles are values 0..15, high nibbles 16..31; x = d*(q-8). */
static void deq_q4_0(const uint8_t *b, float *y) {
  float d = h2f(b);
  for (int j = 0; j < 16; j++) {
    y[j] = d * (float)((b[2 + j] & 15) - 8);
    y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
  }
}

/* Q4_1: {f16 d; f16 m; u8 qs[16]}: x = d*q + m, same nibble order as Q4_0. */
static void deq_q4_1(const uint8_t *b, float *y) {
  float d = h2f(b), m = h2f(b + 2);
  for (int j = 0; j < 16; j++) {
    y[j] = d * (float)(b[4 + j] & 15) + m;
    y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
  }
}

/* Q4_K's 8 six-bit scales and mins packed in 12 bytes: sub-blocks 0..3 in
 * the low 6 bits of bytes 0..3 (scales) and 4..7 (mins); 4..7 split between
 * bytes 8..11 (low 4 bits) and the top 2 bits of bytes 0..7. */
static void q4k_scale_min(int j, const uint8_t *s, int *sc, int *mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

/* Q4_K: {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]} over 256 values in 8
 * sub-blocks of 32; x = d*sc*q - dmin*m. Each 32 bytes of qs hold two
 * sub-blocks: low nibbles the first, high nibbles the second. */
static void deq_q4_k(const uint8_t *b, float *y) {
  float d = h2f(b), dmin = h2f(b + 2);
  const uint8_t *s = b + 4, *q = b + 16;
  for (int g = 0; g < 4; g++, q += 32, y += 64) {
    int sc0, m0, sc1, m1;
    q4k_scale_min(2 * g, s, &sc0, &m0);
    q4k_scale_min(2 * g + 1, s, &sc1, &m1);
    float d0 = d * (float)sc0, mm0 = dmin * (float)m0, d1 = d * (float)sc1, mm1 = dmin * (float)m1;
    for (int l = 0; l < 32; l++) {
      y[l] = d0 * (float)(q[l] & 15) - mm0;
      y[l + 32] = d1 * (float)(q[l] >> 4) - mm1;
    }
  }
}

/* Q6_K: {u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d} over 256 values,
 * 16 sub-blocks of 16; q = 4 low bits from ql, 2 high bits from qh, minus 32;
 * x = d * scale * q. Each half of 128 values uses 64 bytes of ql, 32 of qh. */
static void deq_q6_k(const uint8_t *b, float *y) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t *sc = (const int8_t *)(b + 192);
  float d = h2f(b + 208);
  for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
    for (int l = 0; l < 32; l++) {
      int is = l / 16;
      int q1 = ((ql[l] & 15) | ((qh[l] >> 0 & 3) << 4)) - 32;
      int q2 = ((ql[l + 32] & 15) | ((qh[l] >> 2 & 3) << 4)) - 32;
      int q3 = ((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
      int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
      y[l] = d * (float)sc[is] * (float)q1;
      y[l + 32] = d * (float)sc[is + 2] * (float)q2;
      y[l + 64] = d * (float)sc[is + 4] * (float)q3;
      y[l + 96] = d * (float)sc[is + 6] * (float)q4;
    }
  }
}

/* Contract: out receives every element of t as float32, in ggml order. The
 * tensor came from rt_gguf_open, so its data is in bounds and whole blocks. */
int rt_gguf_dequant(const RtGgufTensor *t, float *out, RbBuf *err) {
  const GgmlType *gt = ggml_type((uint32_t)t->ggml_type);
  void (*fn)(const uint8_t *, float *) = NULL;
  switch (t->ggml_type) {
  case RT_GGML_Q8_0: fn = deq_q8_0; break;
  case RT_GGML_Q4_0: fn = deq_q4_0; break;
  case RT_GGML_Q4_1: fn = deq_q4_1; break;
  case RT_GGML_Q4_K: fn = deq_q4_k; break;
  case RT_GGML_Q6_K: fn = deq_q6_k; break;
  case RT_GGML_F32: case RT_GGML_F16: break;
  default:
    if (err)
      rb_buf_printf(err, "%s: error: tensor '%s': cannot dequantize ggml type %s (supported: "
                    "F32, F16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)\n",
                    t->file ? t->file : "<gguf>", t->name, rt_ggml_type_name(t->ggml_type));
    return RB_EUSER;
  }
  const uint8_t *p = t->data;
  uint64_t nblocks = t->nbytes / gt->bytes;
  if (t->ggml_type == RT_GGML_F32) {
    memcpy(out, p, (size_t)t->nbytes); /* little-endian hosts only, like ggml itself */
  } else if (t->ggml_type == RT_GGML_F16) {
    for (uint64_t i = 0; i < nblocks; i++) out[i] = h2f(p + 2 * i);
  } else {
    for (uint64_t i = 0; i < nblocks; i++) fn(p + i * gt->bytes, out + i * gt->block);
  }
  return RB_OK;
}

/* ---- llama.cpp's Q/K permutation ---- */

/* Contract: see runtime.h. convert_hf_to_gguf's permute() reshapes the rows
 * as (n_head, 2, hd/2) and swaps the last two axes, interleaving the two
 * rotate-half halves of each head for ggml's adjacent-pair RoPE; this puts
 * them back, one head at a time through a head-sized buffer. */
int rt_gguf_unpermute_rows(float *w, int64_t rows, int64_t cols, int n_head, RbBuf *err) {
  if (n_head <= 0 || rows <= 0 || cols <= 0 || rows % n_head || (rows / n_head) % 2) {
    if (err)
      rb_buf_printf(err, "error: cannot un-permute %" PRId64 " rows over %d heads: the head "
                    "dimension must be a whole even number\n", rows, n_head);
    return RB_EUSER;
  }
  int64_t hd = rows / n_head, half = hd / 2;
  size_t head_bytes = (size_t)hd * (size_t)cols * sizeof(float);
  float *tmp = rb_malloc(head_bytes);
  if (!tmp) {
    if (err) rb_buf_printf(err, "error: out of memory un-permuting rows\n");
    return RB_EINTERNAL;
  }
  for (int64_t h = 0; h < n_head; h++) {
    float *head = w + h * hd * cols;
    memcpy(tmp, head, head_bytes);
    for (int64_t s = 0; s < 2; s++)
      for (int64_t i = 0; i < half; i++)
        memcpy(head + (s * half + i) * cols, tmp + (2 * i + s) * cols, (size_t)cols * sizeof(float));
  }
  rb_free(tmp);
  return RB_OK;
}
