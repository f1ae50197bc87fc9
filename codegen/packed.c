/* packed.c: the canonical packed format of a quantized linear, owned once.
 * Every reader, writer and kernel asks here for the tensor names, the word
 * count per row, the shapes and the bytes (DESIGN.md, "Canonical packed format"). */
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"

static const char *const suffixes[CG_PACKED_NPART] = {".bits", ".g", ".h"};
static const char *const dtypes[CG_PACKED_NPART] = {"I32", "F16", "F16"};

int64_t cg_packed_words(int64_t K) { return (K + 31) / 32; }

uint32_t cg_packed_pad_mask(int64_t K) { return K % 32 ? (1u << (K % 32)) - 1 : 0xffffffffu; }

const char *cg_packed_suffix(CgPackedPart part) {
  return (unsigned)part < CG_PACKED_NPART ? suffixes[part] : "?";
}

const char *cg_packed_dtype(CgPackedPart part) {
  return (unsigned)part < CG_PACKED_NPART ? dtypes[part] : "?";
}

int cg_packed_name(char *out, size_t n, const char *base, CgPackedPart part) {
  return (size_t)snprintf(out, n, "%s%s", base, cg_packed_suffix(part)) < n ? 0 : -1;
}

int cg_dense_name(char *out, size_t n, const char *base) {
  return (size_t)snprintf(out, n, "%s.weight", base) < n ? 0 : -1;
}

int cg_packed_shape(CgPackedPart part, int k, int64_t N, int64_t K, int64_t shape[3]) {
  shape[0] = k;
  switch (part) {
  case CG_PACKED_BITS: shape[1] = N, shape[2] = cg_packed_words(K); return 3;
  case CG_PACKED_G: shape[1] = N, shape[2] = 0; return 2;
  case CG_PACKED_H: shape[1] = K, shape[2] = 0; return 2;
  default: return 0;
  }
}

uint64_t cg_packed_count(CgPackedPart part, int k, int64_t N, int64_t K) {
  int64_t s[3];
  int rank = cg_packed_shape(part, k, N, K, s);
  uint64_t n = 1;
  for (int i = 0; i < rank; i++) n *= (uint64_t)s[i];
  return rank ? n : 0;
}

uint64_t cg_packed_part_bytes(CgPackedPart part, int k, int64_t N, int64_t K) {
  return cg_packed_count(part, k, N, K) * (part == CG_PACKED_BITS ? 4u : 2u);
}

uint64_t cg_packed_bytes(int k, int64_t N, int64_t K) {
  uint64_t b = 0;
  for (int p = 0; p < CG_PACKED_NPART; p++) b += cg_packed_part_bytes((CgPackedPart)p, k, N, K);
  return b;
}

int cg_packed_check(CgPackedPart part, const char *dtype, int rank, const int64_t *shape, int k, int64_t N,
                    int64_t K, const char *name, RbBuf *err) {
  int64_t want[3];
  int wrank = cg_packed_shape(part, k, N, K, want);
  int ok = dtype && strcmp(dtype, cg_packed_dtype(part)) == 0 && rank == wrank;
  for (int i = 0; ok && i < rank; i++) ok = shape[i] == want[i];
  if (ok) return RB_OK;
  static const char *const meaning[CG_PACKED_NPART] = {"paths, N, ceil(K/32)", "paths, N", "paths, K"};
  rb_buf_printf(err, "'%s' must be %s [", name, cg_packed_dtype(part));
  for (int i = 0; i < wrank; i++) rb_buf_printf(err, "%s%lld", i ? ", " : "", (long long)want[i]);
  rb_buf_printf(err, "] (%s), found %s [", meaning[part], dtype ? dtype : "?");
  for (int i = 0; i < rank; i++) rb_buf_printf(err, "%s%lld", i ? ", " : "", (long long)shape[i]);
  rb_buf_puts(err, "]");
  return RB_EUSER;
}

int cg_packed_paths(int rank, const int64_t *shape) {
  return rank == 3 && shape[0] >= 1 && shape[0] <= CG_MAX_PATHS ? (int)shape[0] : 0;
}
