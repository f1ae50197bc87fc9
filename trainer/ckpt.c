/* ckpt.c: training checkpoints. A checkpoint is a safetensors file (PyTorch
 * opens it) whose __metadata__ holds the run's state as text and an XXH3-64
 * checksum of the whole file; it is streamed from the trainer's buffers and
 * written durably, and every read checks it before anything is handed out. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "trainer/trainer.h"

/* The header opens with the checksum at a fixed place, so a reader finds
 * its digits without parsing and can take them as zeros, as the writer did. */
static const char sum_prefix[] = "{\"__metadata__\":{\"checksum\":\"xxh3-64:";
enum { SUM_DIGITS = 16 };
static const char format_value[] = "rabit-checkpoint";

static const char *const part_names[TR_CKPT_NPART] = {
    "latent", "row_scale", "col_scale", "latent.muon",
    "row_scale.adam_m", "row_scale.adam_v", "col_scale.adam_m", "col_scale.adam_v",
};

int tr_ckpt_name(char *out, size_t n, const char *base, TrCkptPart part) {
  if ((unsigned)part >= TR_CKPT_NPART) return -1;
  return (size_t)snprintf(out, n, "%s.%s", base, part_names[part]) < n ? 0 : -1;
}

/* What tr_ckpt_read owns: the mapping, the parsed file, the copies. */
typedef struct {
  void *map;
  size_t size;
  RtSafetensors *st;
  RbArena arena;
} Own;

static uint64_t tensor_bytes(const TrCkptTensor *t) {
  uint64_t n = rt_dtype_size(t->dtype);
  for (int i = 0; i < t->rank; i++) n *= (uint64_t)t->shape[i];
  return n;
}

/* ---- writing ---- */

static void meta_str(RbBuf *h, const char *key, const char *value) {
  rb_buf_puts(h, ",");
  rb_buf_json_str(h, key);
  rb_buf_puts(h, ":");
  rb_buf_json_str(h, value ? value : "");
}

static void meta_u64(RbBuf *h, const char *key, uint64_t v) {
  char s[32];
  snprintf(s, sizeof s, "%" PRIu64, v);
  meta_str(h, key, s);
}

/* %.17g reads back to the same double; NaN as "nan" (strtod takes it). */
static void put_double(RbBuf *b, double v) {
  if (isnan(v)) rb_buf_puts(b, "nan");
  else rb_buf_printf(b, "%.17g", v);
}

static void meta_double(RbBuf *h, const char *key, double v) {
  RbBuf s = {0};
  put_double(&s, v);
  meta_str(h, key, s.oom ? "" : s.data);
  h->oom |= s.oom;
  rb_buf_free(&s);
}

static void meta_u64s(RbBuf *h, const char *key, const uint64_t *v, int n) {
  RbBuf s = {0};
  rb_buf_puts(&s, "");
  for (int i = 0; i < n; i++) rb_buf_printf(&s, "%s%" PRIu64, i ? "," : "", v[i]);
  meta_str(h, key, s.data ? s.data : "");
  h->oom |= s.oom;
  rb_buf_free(&s);
}

/* The history as JSON: [[step, tokens, train, val], ...], null for NaN. */
static void meta_history(RbBuf *h, const TrCkptPoint *p, int n) {
  RbBuf s = {0};
  rb_buf_puts(&s, "[");
  for (int i = 0; i < n; i++) {
    rb_buf_printf(&s, "%s[%" PRIu64 ",%" PRIu64 ",", i ? "," : "", p[i].step, p[i].tokens);
    if (isnan(p[i].train_loss)) rb_buf_puts(&s, "null");
    else put_double(&s, p[i].train_loss);
    rb_buf_puts(&s, ",");
    if (isnan(p[i].val_loss)) rb_buf_puts(&s, "null");
    else put_double(&s, p[i].val_loss);
    rb_buf_puts(&s, "]");
  }
  rb_buf_puts(&s, "]");
  meta_str(h, "history", s.data ? s.data : "[]");
  h->oom |= s.oom;
  rb_buf_free(&s);
}

/* Rejects what the reader would refuse, before any byte is written. */
static int check_tensors(const char *path, const TrCkpt *c, RbBuf *err) {
  RbMap seen = {0};
  int rc = RB_OK;
  for (int i = 0; i < c->ntensors && !rc; i++) {
    const TrCkptTensor *t = &c->tensors[i];
    const char *name = t->name ? t->name : "";
    rc = RB_EUSER;
    if (!*name || !strcmp(name, "__metadata__"))
      rb_buf_printf(err, "%s: cannot write the checkpoint: tensor %d has the name '%s'", path, i, name);
    else if ((unsigned)t->dtype >= RT_NDTYPE)
      rb_buf_printf(err, "%s: cannot write the checkpoint: tensor '%s' has no known dtype", path, name);
    else if (t->rank < 0 || t->rank > RT_MAX_DIMS)
      rb_buf_printf(err, "%s: cannot write the checkpoint: tensor '%s' has rank %d (at most %d)", path, name,
                    t->rank, RT_MAX_DIMS);
    else if (!t->data && tensor_bytes(t))
      rb_buf_printf(err, "%s: cannot write the checkpoint: tensor '%s' has no data", path, name);
    else if (rb_map_get(&seen, name, NULL))
      rb_buf_printf(err, "%s: cannot write the checkpoint: two tensors are named '%s'", path, name);
    else rc = RB_OK;
    for (int d = 0; !rc && d < t->rank; d++)
      if (t->shape[d] < 0) {
        rb_buf_printf(err, "%s: cannot write the checkpoint: tensor '%s' has a negative dimension", path, name);
        rc = RB_EUSER;
      }
    if (!rc && rb_map_put(&seen, name, i)) rc = RB_EINTERNAL;
  }
  rb_map_free(&seen);
  return rc;
}

/* The header JSON: metadata first (the checksum's digits as zeros), then
 * the tensors in the caller's order with offsets from the data order. */
static void build_header(const TrCkpt *c, const int *order, uint64_t *offset, RbBuf *h) {
  rb_buf_puts(h, sum_prefix);
  rb_buf_puts(h, "0000000000000000\"");
  char fmt[64];
  snprintf(fmt, sizeof fmt, "%s %d", format_value, TR_CKPT_VERSION);
  meta_str(h, "format", fmt);
  meta_u64(h, "step", c->step);
  meta_u64(h, "tokens_seen", c->tokens_seen);
  meta_u64s(h, "data_pos", c->data_pos, c->ndata_pos);
  meta_u64s(h, "rng", c->rng, c->nrng);
  if (c->model) meta_str(h, "model", c->model);
  if (c->ir_hash) meta_str(h, "ir_hash", c->ir_hash);
  const TrCkptOptions *o = &c->opt;
  if (o->method) meta_str(h, "opt.method", o->method);
  meta_u64(h, "opt.paths", (uint64_t)o->paths);
  meta_double(h, "opt.lr_w", o->lr_w);
  meta_double(h, "opt.lr_s", o->lr_s);
  meta_double(h, "opt.gamma", o->gamma);
  meta_u64(h, "opt.seed", o->seed);
  meta_u64(h, "opt.tokens", o->tokens);
  meta_u64(h, "opt.batch", (uint64_t)o->batch);
  meta_u64(h, "opt.seq", (uint64_t)o->seq);
  if (o->ir) meta_str(h, "opt.ir", o->ir);
  if (o->weights) meta_str(h, "opt.weights", o->weights);
  if (o->data) meta_str(h, "opt.data", o->data);
  meta_history(h, c->history, c->nhistory);
  meta_u64(h, "extra", (uint64_t)c->nextra);
  for (int i = 0; i < 2 * c->nextra; i++) {
    char key[48];
    snprintf(key, sizeof key, "extra.%d.%s", i / 2, i % 2 ? "value" : "key");
    meta_str(h, key, c->extra[i]);
  }
  rb_buf_puts(h, "}");
  /* Offsets in data order: 8-byte dtypes, then 4, 2, 1, so that with an
   * 8-aligned data section every tensor is aligned for its dtype. */
  uint64_t off = 0;
  for (int i = 0; i < c->ntensors; i++) {
    const TrCkptTensor *t = &c->tensors[order[i]];
    offset[order[i]] = off;
    off += tensor_bytes(t);
  }
  for (int i = 0; i < c->ntensors; i++) {
    const TrCkptTensor *t = &c->tensors[i];
    rb_buf_puts(h, ",");
    rb_buf_json_str(h, t->name);
    rb_buf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", rt_dtype_name(t->dtype));
    for (int d = 0; d < t->rank; d++) rb_buf_printf(h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    rb_buf_printf(h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset[i], offset[i] + tensor_bytes(t));
  }
  rb_buf_puts(h, "}");
  rb_buf_put(h, "       ", (8 - h->len % 8) % 8);
}

int tr_ckpt_write(const char *path, const TrCkpt *c, RbBuf *err) {
  int rc = check_tensors(path, c, err);
  if (rc) return rc;
  int n = c->ntensors;
  int *order = rb_malloc(((size_t)n + 1) * sizeof *order);
  uint64_t *offset = rb_malloc(((size_t)n + 1) * sizeof *offset);
  const void **parts = rb_malloc(((size_t)n + 2) * sizeof *parts);
  size_t *lens = rb_malloc(((size_t)n + 2) * sizeof *lens);
  RbBuf h = {0};
  rc = RB_EINTERNAL;
  if (!order || !offset || !parts || !lens) goto done;
  int m = 0;
  for (size_t size = 8; size >= 1; size /= 2)
    for (int i = 0; i < n; i++)
      if (rt_dtype_size(c->tensors[i].dtype) == size) order[m++] = i;
  build_header(c, order, offset, &h);
  if (h.oom) goto done;

  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
  parts[0] = len8, lens[0] = 8;
  parts[1] = h.data, lens[1] = h.len;
  for (int i = 0; i < n; i++) parts[i + 2] = c->tensors[order[i]].data, lens[i + 2] = (size_t)tensor_bytes(&c->tensors[order[i]]);
  /* One pass of hashing over the caller's buffers; the digits go in last. */
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  for (int i = 0; i < n + 2; i++) XXH3_64bits_update(&st, parts[i], lens[i]);
  char digits[SUM_DIGITS + 1];
  snprintf(digits, sizeof digits, "%016" PRIx64, (uint64_t)XXH3_64bits_digest(&st));
  memcpy(h.data + strlen(sum_prefix), digits, SUM_DIGITS);

  RbDurableWrite w = {.kill_after = c->test_kill_after};
  rc = rb_write_durable(path, parts, lens, n + 2, &w);
  if (rc) rb_buf_printf(err, "%s: cannot write the checkpoint: %s %s: %s", path, w.step, w.file, strerror(errno));
done:
  if (rc == RB_EINTERNAL && (!order || !offset || !parts || !lens || h.oom))
    rb_buf_printf(err, "%s: out of memory writing the checkpoint", path);
  rb_free(order);
  rb_free(offset);
  rb_free(parts);
  rb_free(lens);
  rb_buf_free(&h);
  return rc;
}

/* ---- reading ---- */

static int bad(RbBuf *err, const char *path, const char *what) {
  rb_buf_printf(err, "%s: not a valid checkpoint: %s", path, what);
  return RB_EUSER;
}

/* Parses a decimal u64 filling all of s; 0 on success. */
static int parse_u64(const char *s, uint64_t *v) {
  if (!s || !*s || *s == '-') return -1;
  char *end;
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (errno || *end) return -1;
  *v = x;
  return 0;
}

static int parse_double(const char *s, double *v) {
  if (!s || !*s) return -1;
  char *end;
  *v = strtod(s, &end);
  return *end ? -1 : 0;
}

/* "a,b,c" -> an arena array; "" is empty. */
static int parse_u64s(RbArena *a, const char *s, const uint64_t **out, int *n) {
  *n = 0;
  *out = NULL;
  if (!s) return -1;
  if (!*s) return 0;
  int count = 1;
  for (const char *p = s; *p; p++) count += *p == ',';
  uint64_t *v = rb_arena_alloc(a, (size_t)count * sizeof *v);
  if (!v) return -1;
  const char *p = s;
  for (int i = 0; i < count; i++) {
    char *end;
    if (*p < '0' || *p > '9') return -1;
    errno = 0;
    v[i] = strtoull(p, &end, 10);
    if (errno || (*end != ',' && *end != 0)) return -1;
    p = *end ? end + 1 : end;
  }
  *out = v, *n = count;
  return 0;
}

/* One number of the history, or null (NaN). */
static const char *history_num(const char *p, double *v) {
  while (*p == ' ') p++;
  if (!strncmp(p, "null", 4)) {
    *v = NAN;
    return p + 4;
  }
  char *end;
  *v = strtod(p, &end);
  return end == p ? NULL : end;
}

static int parse_history(RbArena *a, const char *s, const TrCkptPoint **out, int *n) {
  *n = 0;
  *out = NULL;
  if (!s || s[0] != '[') return -1;
  int count = 0;
  for (const char *p = s + 1; *p; p++) count += *p == '[';
  TrCkptPoint *v = rb_arena_alloc(a, ((size_t)count + 1) * sizeof *v);
  if (!v) return -1;
  const char *p = s + 1;
  for (int i = 0; i < count; i++) {
    if (i && *p++ != ',') return -1;
    if (*p++ != '[') return -1;
    char *end;
    v[i].step = strtoull(p, &end, 10);
    if (*end != ',') return -1;
    v[i].tokens = strtoull(end + 1, &end, 10);
    if (*end != ',' || !(p = history_num(end + 1, &v[i].train_loss)) || *p++ != ',' ||
        !(p = history_num(p, &v[i].val_loss)) || *p++ != ']')
      return -1;
  }
  if (strcmp(p, "]")) return -1;
  *out = v, *n = count;
  return 0;
}

static int meta_int(const RtSafetensors *st, const char *key, int *v) {
  uint64_t x;
  if (parse_u64(rt_st_meta(st, key), &x) || x > 0x7fffffff) return -1;
  *v = (int)x;
  return 0;
}

/* Fills c's fields from the checked file's metadata and tensors. */
static int parse_fields(const char *path, Own *own, TrCkpt *c, RbBuf *err) {
  const RtSafetensors *st = own->st;
  RbArena *a = &own->arena;
  const char *fmt = rt_st_meta(st, "format");
  size_t fl = strlen(format_value);
  if (!fmt || strncmp(fmt, format_value, fl) || fmt[fl] != ' ') return bad(err, path, "no \"format\": \"rabit-checkpoint N\"");
  int version = atoi(fmt + fl + 1);
  if (version != TR_CKPT_VERSION) {
    rb_buf_printf(err, "%s: checkpoint format version %d is not supported (this build reads %d)", path, version,
                  TR_CKPT_VERSION);
    return RB_EUSER;
  }
  c->version = version;
  TrCkptOptions *o = &c->opt;
  static const char *const keys[] = {"step", "tokens_seen", "opt.seed", "opt.tokens"};
  uint64_t *dst[] = {&c->step, &c->tokens_seen, &o->seed, &o->tokens};
  for (int i = 0; i < 4; i++)
    if (parse_u64(rt_st_meta(st, keys[i]), dst[i])) {
      rb_buf_printf(err, "%s: not a valid checkpoint: metadata '%s' is not a number", path, keys[i]);
      return RB_EUSER;
    }
  static const char *const ikeys[] = {"opt.paths", "opt.batch", "opt.seq"};
  int *idst[] = {&o->paths, &o->batch, &o->seq};
  for (int i = 0; i < 3; i++)
    if (meta_int(st, ikeys[i], idst[i])) {
      rb_buf_printf(err, "%s: not a valid checkpoint: metadata '%s' is not a count", path, ikeys[i]);
      return RB_EUSER;
    }
  static const char *const dkeys[] = {"opt.lr_w", "opt.lr_s", "opt.gamma"};
  double *ddst[] = {&o->lr_w, &o->lr_s, &o->gamma};
  for (int i = 0; i < 3; i++)
    if (parse_double(rt_st_meta(st, dkeys[i]), ddst[i])) {
      rb_buf_printf(err, "%s: not a valid checkpoint: metadata '%s' is not a number", path, dkeys[i]);
      return RB_EUSER;
    }
  if (parse_u64s(a, rt_st_meta(st, "data_pos"), &c->data_pos, &c->ndata_pos))
    return bad(err, path, "metadata 'data_pos' is not a list of numbers");
  if (parse_u64s(a, rt_st_meta(st, "rng"), &c->rng, &c->nrng))
    return bad(err, path, "metadata 'rng' is not a list of numbers");
  if (parse_history(a, rt_st_meta(st, "history"), &c->history, &c->nhistory))
    return bad(err, path, "metadata 'history' is not a list of [step, tokens, train, val]");
  /* Strings point into the parsed file, which lives as long as c. */
  c->model = rt_st_meta(st, "model");
  c->ir_hash = rt_st_meta(st, "ir_hash");
  o->method = rt_st_meta(st, "opt.method");
  o->ir = rt_st_meta(st, "opt.ir");
  o->weights = rt_st_meta(st, "opt.weights");
  o->data = rt_st_meta(st, "opt.data");

  int n = rt_st_count(st);
  TrCkptTensor *t = rb_arena_alloc(a, ((size_t)n + 1) * sizeof *t);
  if (!t) return RB_EINTERNAL;
  for (int i = 0; i < n; i++) {
    const RtTensor *s = rt_st_tensor(st, i);
    t[i].name = s->name, t[i].dtype = s->dtype, t[i].rank = s->rank, t[i].data = s->data;
    memcpy(t[i].shape, s->shape, sizeof t[i].shape);
  }
  c->tensors = t, c->ntensors = n;
  return RB_OK;
}

/* The extras: "extra" their count, "extra.<i>.key" and "extra.<i>.value". */
static int parse_extra(const char *path, Own *own, TrCkpt *c, RbBuf *err) {
  int n = 0;
  if (meta_int(own->st, "extra", &n)) return bad(err, path, "metadata 'extra' is not a count");
  const char **ex = rb_arena_alloc(&own->arena, ((size_t)n * 2 + 1) * sizeof *ex);
  if (!ex) return RB_EINTERNAL;
  for (int i = 0; i < 2 * n; i++) {
    char key[48];
    snprintf(key, sizeof key, "extra.%d.%s", i / 2, i % 2 ? "value" : "key");
    if (!(ex[i] = rt_st_meta(own->st, key))) {
      rb_buf_printf(err, "%s: not a valid checkpoint: metadata '%s' is missing", path, key);
      return RB_EUSER;
    }
  }
  c->extra = ex, c->nextra = n;
  return RB_OK;
}

int tr_ckpt_read(const char *path, TrCkpt *c, RbBuf *err) {
  memset(c, 0, sizeof *c);
  Own *own = rb_calloc(1, sizeof *own);
  if (!own) return RB_EINTERNAL;
  c->own = own;
  int rc = RB_EUSER;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0) {
    rb_buf_printf(err, "%s: cannot read the checkpoint: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    goto fail;
  }
  own->size = (size_t)sb.st_size;
  if (own->size) own->map = mmap(NULL, own->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (own->map == MAP_FAILED) {
    own->map = NULL;
    rb_buf_printf(err, "%s: cannot map the checkpoint: %s", path, strerror(errno));
    goto fail;
  }
  const unsigned char *b = own->map;
  size_t plen = strlen(sum_prefix);
  uint64_t hlen = 0;
  for (int i = 7; own->size >= 8 && i >= 0; i--) /* little-endian */ hlen = hlen << 8 | b[i];
  if (own->size < 8) {
    rb_buf_printf(err, "%s: the checkpoint is truncated: %zu bytes, shorter than the 8-byte header length", path,
                  own->size);
    goto fail;
  }
  if (hlen > own->size - 8) {
    rb_buf_printf(err, "%s: the checkpoint is truncated: %zu bytes, its header says %llu header bytes", path,
                  own->size, (unsigned long long)hlen);
    goto fail;
  }
  if (hlen < plen + SUM_DIGITS || memcmp(b + 8, sum_prefix, plen)) {
    rc = bad(err, path, "its header does not open with the checksum (not written by tr_ckpt_write)");
    goto fail;
  }
  /* The checksum over every byte, its own digits read as zeros. */
  const unsigned char *digits = b + 8 + plen;
  char want[SUM_DIGITS + 1];
  memcpy(want, digits, SUM_DIGITS);
  want[SUM_DIGITS] = 0;
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, b, 8 + plen);
  XXH3_64bits_update(&st, "0000000000000000", SUM_DIGITS);
  XXH3_64bits_update(&st, digits + SUM_DIGITS, own->size - 8 - plen - SUM_DIGITS);
  char got[SUM_DIGITS + 1];
  snprintf(got, sizeof got, "%016" PRIx64, (uint64_t)XXH3_64bits_digest(&st));
  if (strcmp(got, want)) {
    /* A short file is the likelier story (a copy cut off); say which. */
    RtSafetensors *probe = NULL;
    int parses = rt_st_open_memory(b, own->size, path, &probe, NULL) == RB_OK;
    rt_st_close(probe);
    rb_buf_printf(err, "%s: checksum mismatch (file %s, header says %s): the checkpoint is %s; it was not loaded",
                  path, got, want, parses ? "corrupted" : "truncated or corrupted");
    goto fail;
  }
  if ((rc = rt_st_open_memory(b, own->size, path, &own->st, err))) goto fail;
  if ((rc = parse_fields(path, own, c, err))) goto fail;
  if ((rc = parse_extra(path, own, c, err))) goto fail;
  return RB_OK;
fail:
  if (rc == RB_EINTERNAL) rb_buf_printf(err, "%s: out of memory reading the checkpoint", path);
  tr_ckpt_free(c);
  return rc;
}

const TrCkptTensor *tr_ckpt_find(const TrCkpt *c, const char *name) {
  const Own *own = c->own;
  if (own && own->st) { /* the reader's index: its tensors are c's, in the same order */
    const RtTensor *t = rt_st_find(own->st, name);
    return t ? &c->tensors[t - rt_st_tensor(own->st, 0)] : NULL;
  }
  for (int i = 0; i < c->ntensors; i++)
    if (!strcmp(c->tensors[i].name, name)) return &c->tensors[i];
  return NULL;
}

const char *tr_ckpt_extra(const TrCkpt *c, const char *key) {
  for (int i = 0; i < c->nextra; i++)
    if (!strcmp(c->extra[2 * i], key)) return c->extra[2 * i + 1];
  return NULL;
}

void tr_ckpt_free(TrCkpt *c) {
  Own *own = c->own;
  if (own) {
    rt_st_close(own->st);
    if (own->map) munmap(own->map, own->size);
    rb_arena_free(&own->arena);
    rb_free(own);
  }
  memset(c, 0, sizeof *c);
}
