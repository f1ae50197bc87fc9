/* gguf_builder.c: writes GGUF files byte by byte, and reference quantizers
 * that encode each element at the position ggml's block layout documents
 * for it, so the library's decoding loops are checked by independent code. */
#include "tests/weights_gguf/gguf_builder.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void gb_init(GbFile *f) {
  memset(f, 0, sizeof *f);
  f->version = 3;
  f->alignment = 32;
}

void gb_free(GbFile *f) { rb_buf_free(&f->kv); }

void gb_put32(RbBuf *b, uint32_t v) {
  uint8_t p[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  rb_buf_put(b, p, 4);
}

void gb_put64(RbBuf *b, uint64_t v) {
  gb_put32(b, (uint32_t)v);
  gb_put32(b, (uint32_t)(v >> 32));
}

void gb_putstr(RbBuf *b, const char *s) {
  gb_put64(b, strlen(s));
  rb_buf_put(b, s, strlen(s));
}

static void key(GbFile *f, const char *k, uint32_t type) {
  gb_putstr(&f->kv, k);
  gb_put32(&f->kv, type);
  f->nkv++;
}

void gb_u8(GbFile *f, const char *k, uint8_t v) { key(f, k, 0); rb_buf_put(&f->kv, &v, 1); }
void gb_i8(GbFile *f, const char *k, int8_t v) { key(f, k, 1); rb_buf_put(&f->kv, &v, 1); }
void gb_u16(GbFile *f, const char *k, uint16_t v) {
  key(f, k, 2);
  uint8_t p[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
  rb_buf_put(&f->kv, p, 2);
}
void gb_i16(GbFile *f, const char *k, int16_t v) {
  key(f, k, 3);
  uint16_t u = (uint16_t)v;
  uint8_t p[2] = {(uint8_t)u, (uint8_t)(u >> 8)};
  rb_buf_put(&f->kv, p, 2);
}
void gb_u32(GbFile *f, const char *k, uint32_t v) { key(f, k, 4); gb_put32(&f->kv, v); }
void gb_i32(GbFile *f, const char *k, int32_t v) { key(f, k, 5); gb_put32(&f->kv, (uint32_t)v); }
void gb_f32(GbFile *f, const char *k, float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  key(f, k, 6);
  gb_put32(&f->kv, u);
}
void gb_bool(GbFile *f, const char *k, int v) {
  uint8_t b = v != 0;
  key(f, k, 7);
  rb_buf_put(&f->kv, &b, 1);
}
void gb_str(GbFile *f, const char *k, const char *v) { key(f, k, 8); gb_putstr(&f->kv, v); }
void gb_u64(GbFile *f, const char *k, uint64_t v) { key(f, k, 10); gb_put64(&f->kv, v); }
void gb_i64(GbFile *f, const char *k, int64_t v) { key(f, k, 11); gb_put64(&f->kv, (uint64_t)v); }
void gb_f64(GbFile *f, const char *k, double v) {
  uint64_t u;
  memcpy(&u, &v, 8);
  key(f, k, 12);
  gb_put64(&f->kv, u);
}

void gb_arr_str(GbFile *f, const char *k, const char *const *v, int n) {
  key(f, k, 9);
  gb_put32(&f->kv, 8);
  gb_put64(&f->kv, (uint64_t)n);
  for (int i = 0; i < n; i++) gb_putstr(&f->kv, v[i]);
}

void gb_arr_i32(GbFile *f, const char *k, const int32_t *v, int n) {
  key(f, k, 9);
  gb_put32(&f->kv, 5);
  gb_put64(&f->kv, (uint64_t)n);
  for (int i = 0; i < n; i++) gb_put32(&f->kv, (uint32_t)v[i]);
}

void gb_arr_f32(GbFile *f, const char *k, const float *v, int n) {
  key(f, k, 9);
  gb_put32(&f->kv, 6);
  gb_put64(&f->kv, (uint64_t)n);
  for (int i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &v[i], 4);
    gb_put32(&f->kv, u);
  }
}

void gb_raw(GbFile *f, const char *k, const void *bytes, size_t n) {
  gb_putstr(&f->kv, k);
  rb_buf_put(&f->kv, bytes, n);
  f->nkv++;
}

int gb_tensor(GbFile *f, const char *name, uint32_t type, int ndims, const uint64_t *ne,
              const void *data, size_t nbytes) {
  GbTensor *t = &f->t[f->nt];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->type = type;
  t->ndims = (uint32_t)ndims;
  for (int i = 0; i < 4; i++) t->ne[i] = i < ndims ? ne[i] : 1;
  t->data = data;
  t->nbytes = nbytes;
  return f->nt++;
}

void gb_finish(GbFile *f, RbBuf *out, size_t *info_end, size_t *data_start) {
  rb_buf_put(out, "GGUF", 4);
  gb_put32(out, f->version);
  gb_put64(out, (uint64_t)f->nt);
  gb_put64(out, f->nkv);
  if (f->kv.len) rb_buf_put(out, f->kv.data, f->kv.len);
  uint64_t off = 0, a = f->alignment;
  for (int i = 0; i < f->nt; i++) {
    GbTensor *t = &f->t[i];
    if (!t->force_offset) {
      t->offset = off;
      off = (off + t->nbytes + a - 1) / a * a;
    }
    gb_putstr(out, t->name);
    gb_put32(out, t->ndims);
    for (uint32_t d = 0; d < t->ndims; d++) gb_put64(out, t->ne[d]);
    gb_put32(out, t->type);
    gb_put64(out, t->offset);
  }
  if (info_end) *info_end = out->len;
  while (out->len % a) rb_buf_put(out, "", 1);
  size_t base = out->len;
  if (data_start) *data_start = base;
  for (int i = 0; i < f->nt; i++) {
    GbTensor *t = &f->t[i];
    if (t->force_offset) continue;
    while (out->len < base + t->offset) rb_buf_put(out, "", 1);
    rb_buf_put(out, t->data, t->nbytes);
  }
}

int gb_type_block(uint32_t type, size_t *block, size_t *bytes) {
  switch (type) {
  case 0: *block = 1, *bytes = 4; return 1;
  case 1: *block = 1, *bytes = 2; return 1;
  case 2: *block = 32, *bytes = 18; return 1;
  case 3: *block = 32, *bytes = 20; return 1;
  case 8: *block = 32, *bytes = 34; return 1;
  case 12: *block = 256, *bytes = 144; return 1;
  case 14: *block = 256, *bytes = 210; return 1;
  default: return 0;
  }
}

/* ---- reference quantizers ---- */

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static float f16r(float v) { return rb_f32_from_f16(rb_f16_from_f32(v)); }

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Q8_0: d = amax/127 (fp16), q = round(x/d) in int8. */
static void q8_0(const float *x, uint8_t *b, float *e) {
  float amax = 0;
  for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
  float d = f16r(amax / 127);
  put16(b, rb_f16_from_f32(d));
  for (int i = 0; i < 32; i++) {
    int q = d ? clampi((int)lrintf(x[i] / d), -127, 127) : 0;
    b[2 + i] = (uint8_t)(int8_t)q;
    e[i] = d * (float)q;
  }
}

/* Q4_0: element i < 16 in the low nibble of qs[i], element 16+i in the high
 * nibble; x = d * (q - 8). */
static void q4_0(const float *x, uint8_t *b, float *e) {
  float amax = 0;
  for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
  float d = f16r(amax / 7);
  put16(b, rb_f16_from_f32(d));
  memset(b + 2, 0, 16);
  for (int i = 0; i < 32; i++) {
    int q = d ? clampi((int)lrintf(x[i] / d) + 8, 0, 15) : 8;
    b[2 + i % 16] |= (uint8_t)(q << (i < 16 ? 0 : 4));
    e[i] = d * (float)(q - 8);
  }
}

/* Q4_1: as Q4_0's nibble order with x = d * q + m. */
static void q4_1(const float *x, uint8_t *b, float *e) {
  float lo = x[0], hi = x[0];
  for (int i = 0; i < 32; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
  float d = f16r((hi - lo) / 15), m = f16r(lo);
  put16(b, rb_f16_from_f32(d));
  put16(b + 2, rb_f16_from_f32(m));
  memset(b + 4, 0, 16);
  for (int i = 0; i < 32; i++) {
    int q = d ? clampi((int)lrintf((x[i] - m) / d), 0, 15) : 0;
    b[4 + i % 16] |= (uint8_t)(q << (i < 16 ? 0 : 4));
    e[i] = d * (float)q + m;
  }
}

/* Q4_K: 8 sub-blocks of 32 with 6-bit scale sc[s] and min m[s]; element e
 * sits in qs[(e/64)*32 + e%32], low nibble for even sub-blocks, high for odd;
 * x = d*sc*q - dmin*m. The scales pack as the K-quant docs describe: s < 4
 * in bytes s (scale) and s+4 (min), low 6 bits; s >= 4 with its low 4 bits
 * in byte s+4 (scale low nibble, min high nibble) and its top 2 bits in the
 * top 2 bits of bytes s-4 (scale) and s (min). */
static void q4_k(const float *x, uint8_t *b, float *e) {
  float scale[8], minv[8], maxs = 0, maxm = 0;
  for (int s = 0; s < 8; s++) {
    float lo = 0, hi = x[s * 32]; /* min clamped to <= 0, as ggml does */
    for (int i = 0; i < 32; i++) lo = fminf(lo, x[s * 32 + i]), hi = fmaxf(hi, x[s * 32 + i]);
    scale[s] = (hi - lo) / 15;
    minv[s] = -lo;
    maxs = fmaxf(maxs, scale[s]);
    maxm = fmaxf(maxm, minv[s]);
  }
  float d = f16r(maxs / 63), dmin = f16r(maxm / 63);
  int sc[8], mn[8];
  for (int s = 0; s < 8; s++) {
    sc[s] = d ? clampi((int)lrintf(scale[s] / d), 0, 63) : 0;
    mn[s] = dmin ? clampi((int)lrintf(minv[s] / dmin), 0, 63) : 0;
  }
  memset(b, 0, 144);
  put16(b, rb_f16_from_f32(d));
  put16(b + 2, rb_f16_from_f32(dmin));
  uint8_t *S = b + 4, *qs = b + 16;
  for (int s = 0; s < 8; s++) {
    if (s < 4) {
      S[s] |= (uint8_t)sc[s];
      S[s + 4] |= (uint8_t)mn[s];
    } else {
      S[s + 4] |= (uint8_t)((sc[s] & 15) | (mn[s] & 15) << 4);
      S[s - 4] |= (uint8_t)((sc[s] >> 4) << 6);
      S[s] |= (uint8_t)((mn[s] >> 4) << 6);
    }
  }
  for (int i = 0; i < 256; i++) {
    int s = i / 32;
    float ds = d * (float)sc[s], ms = dmin * (float)mn[s];
    int q = ds ? clampi((int)lrintf((x[i] + ms) / ds), 0, 15) : 0;
    qs[(i / 64) * 32 + i % 32] |= (uint8_t)(q << (s % 2 ? 4 : 0));
    e[i] = ds * (float)q - ms;
  }
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales; q in 0..63 (minus 32 on
 * decode). Element e: half h = e/128, r = e%128, quarter u = r/32, l = r%32;
 * low 4 bits in ql[h*64 + (u%2)*32 + l] (low nibble for u < 2, high for
 * u >= 2), top 2 bits in qh[h*32 + l] at bit 2u; scale index e/16. */
static void q6_k(const float *x, uint8_t *b, float *e) {
  float scale[16], maxs = 0;
  for (int s = 0; s < 16; s++) {
    float amax = 0, sv = 0;
    for (int i = 0; i < 16; i++)
      if (fabsf(x[s * 16 + i]) > amax) amax = fabsf(x[s * 16 + i]), sv = x[s * 16 + i];
    scale[s] = sv / -32; /* like ggml: the largest magnitude maps to -32 */
    if (fabsf(scale[s]) > fabsf(maxs)) maxs = scale[s];
  }
  float d = f16r(maxs / -128);
  int8_t sc[16];
  for (int s = 0; s < 16; s++) sc[s] = (int8_t)(d ? clampi((int)lrintf(scale[s] / d), -128, 127) : 0);
  memset(b, 0, 210);
  uint8_t *ql = b, *qh = b + 128;
  memcpy(b + 192, sc, 16);
  put16(b + 208, rb_f16_from_f32(d));
  for (int i = 0; i < 256; i++) {
    float ds = d * (float)sc[i / 16];
    int q = ds ? clampi((int)lrintf(x[i] / ds), -32, 31) + 32 : 32;
    int h = i / 128, r = i % 128, u = r / 32, l = r % 32;
    ql[h * 64 + (u % 2) * 32 + l] |= (uint8_t)((q & 15) << (u < 2 ? 0 : 4));
    qh[h * 32 + l] |= (uint8_t)((q >> 4) << (2 * u));
    e[i] = ds * (float)(q - 32);
  }
}

void ref_quant(uint32_t type, const float *x, size_t n, uint8_t *out, float *expect) {
  size_t block, bytes;
  if (!gb_type_block(type, &block, &bytes)) return;
  for (size_t i = 0; i < n / block; i++) {
    const float *xb = x + i * block;
    uint8_t *ob = out + i * bytes;
    float *eb = expect + i * block;
    switch (type) {
    case 0: memcpy(ob, xb, 4), eb[0] = xb[0]; break;
    case 1: put16(ob, rb_f16_from_f32(xb[0])), eb[0] = f16r(xb[0]); break;
    case 2: q4_0(xb, ob, eb); break;
    case 3: q4_1(xb, ob, eb); break;
    case 8: q8_0(xb, ob, eb); break;
    case 12: q4_k(xb, ob, eb); break;
    case 14: q6_k(xb, ob, eb); break;
    }
  }
}

uint64_t gb_rand(uint64_t *s) {
  /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

float gb_randf(uint64_t *s) { return (float)((double)(gb_rand(s) >> 11) / 9007199254740992.0 * 2 - 1); }
