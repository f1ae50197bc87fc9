/* test_ops_emit.c: CPU test of the op emitters (cg_ops.c). Every op kind, for
 * the SmolLM2-135M and Llama-2-7B shapes, emits the same source twice, emits a
 * different source when a dim it is specialized on changes, includes nothing,
 * and compiles with NVRTC for sm_80, sm_89 and sm_90. Bad specs are refused
 * with RB_EUSER and a message. No GPU needed. */
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"
#include "tests/common/launch.h"
#include "runtime/jit/jit.h"

static int npass, nfail;

static void check(int ok, const char *what, const char *detail) {
  if (ok) {
    npass++;
  } else {
    nfail++;
    printf("FAIL %s%s%s\n", what, detail && *detail ? ": " : "", detail ? detail : "");
  }
}

typedef struct {
  const char *name;
  int dim, ffn, vocab, heads, kv_heads, head_dim, max_ctx;
  float eps, theta;
} Shape;

static const Shape shapes[] = {
    {"smollm2-135m", 576, 1536, 49152, 9, 3, 64, 8192, 1e-5f, 100000.0f},
    {"llama-2-7b", 4096, 11008, 32000, 32, 32, 128, 4096, 1e-5f, 10000.0f},
};

/* The spec of kind k for a model shape (swiglu is specialized on the FFN width). */
static CgKernel op_spec(CgKind k, const Shape *m) {
  CgKernel s;
  memset(&s, 0, sizeof s);
  s.op.kind = k;
  s.op.dim = k == CG_SWIGLU ? m->ffn : m->dim;
  s.op.vocab = m->vocab;
  s.op.heads = m->heads;
  s.op.kv_heads = m->kv_heads;
  s.op.head_dim = m->head_dim;
  s.op.max_ctx = m->max_ctx;
  s.op.eps = m->eps;
  s.op.rope_theta = m->theta;
  return s;
}

/* A copy of s with one parameter the kernel is specialized on changed. */
static CgKernel perturb(CgKernel s) {
  switch (s.op.kind) {
  case CG_EMBED: s.op.vocab += 1; break;
  case CG_RMSNORM: s.op.eps *= 10.0f; break;
  case CG_ROPE_KV: s.op.rope_theta *= 2.0f; break;
  case CG_ATTENTION: s.op.max_ctx *= 2; break;
  default: s.op.dim += 8; break;
  }
  return s;
}

/* Emit s; returns rc and leaves source, entry and error text in the outputs. */
static int emit(const CgKernel *s, RbBuf *src, char entry[64], RbBuf *err) {
  memset(entry, 0, 64);
  return test_emit(s, src, entry, err);
}

static int is_identifier(const char *e) {
  if (!*e || (*e >= '0' && *e <= '9')) return 0;
  for (; *e; e++)
    if (!((*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z') || (*e >= '0' && *e <= '9') || *e == '_'))
      return 0;
  return 1;
}

/* One (kind, shape) case: determinism, sensitivity, self-containment, launch
 * geometry and compilation for the three arches. */
static void test_case(CgKind k, const Shape *m) {
  static const char *const arches[] = {"sm_80", "sm_89", "sm_90"};
  char what[128], entry[64], entry2[64];
  int fail0 = nfail;
  snprintf(what, sizeof what, "%s %s", cg_kind_name(k), m->name);

  CgKernel s = op_spec(k, m);
  RbBuf a = {0}, b = {0}, err = {0};
  int rc1 = emit(&s, &a, entry, &err);
  int rc2 = emit(&s, &b, entry2, &err);
  check(rc1 == RB_OK && rc2 == RB_OK, what, err.data);
  if (rc1 != RB_OK || rc2 != RB_OK) goto done;
  check(a.len == b.len && memcmp(a.data, b.data, a.len) == 0 && strcmp(entry, entry2) == 0, what,
        "two emits of one spec differ");
  check(is_identifier(entry), what, "entry is not a C identifier");
  char decl[96];
  snprintf(decl, sizeof decl, "%s(", entry);
  check(strstr(a.data, decl) != NULL && strstr(a.data, "extern \"C\" __global__") != NULL, what,
        "entry not declared extern \"C\" __global__ in the source");
  check(strstr(a.data, "#include") == NULL, what, "source includes a header");

  CgKernel s2 = perturb(s);
  RbBuf c = {0};
  char entry3[64];
  check(emit(&s2, &c, entry3, &err) == RB_OK && (c.len != a.len || memcmp(c.data, a.data, a.len)),
        what, "changing a specialized parameter left the source unchanged");
  rb_buf_free(&c);

  /* Geometry: whole warps, at most 1024 threads, a grid for decode and prefill. */
  int ns[] = {1, 7, 300};
  for (int i = 0; i < 3; i++) {
    int n = k == CG_ADD ? ns[i] * s.op.dim : ns[i];
    CgLaunch L = test_launch(&s, n);
    unsigned threads = L.block[0] * L.block[1] * L.block[2];
    check(threads >= 1 && threads <= 1024 && L.grid[0] * L.grid[1] * L.grid[2] > 0, what,
          "bad launch geometry");
  }

  for (int i = 0; i < 3; i++) {
    void *cubin = NULL;
    size_t len = 0;
    RbBuf log = {0};
    char name[80];
    snprintf(name, sizeof name, "%s.cu", entry);
    int rc = rt_nvrtc_compile(a.data, name, arches[i], rt_nvrtc_default_opts,
                              rt_nvrtc_default_nopts, &cubin, &len, &log);
    char msg[160];
    snprintf(msg, sizeof msg, "NVRTC %s failed (rc %d)", arches[i], rc);
    check(rc == RB_OK && cubin && len > 0, what, msg);
    if (rc != RB_OK && log.data) printf("%s\n", log.data);
    rb_free(cubin);
    rb_buf_free(&log);
  }
done:
  printf("%s %-34s %s  %zu bytes\n", nfail == fail0 ? "ok  " : "FAIL", what, entry, a.len);
  rb_buf_free(&a);
  rb_buf_free(&b);
  rb_buf_free(&err);
}

/* A spec the emitters cannot take is refused with RB_EUSER and the given text. */
static void test_reject(const char *what, CgKernel s, const char *want) {
  RbBuf src = {0}, err = {0};
  char entry[64];
  int rc = emit(&s, &src, entry, &err);
  int ok = rc == RB_EUSER && err.data && strcmp(err.data, want) == 0;
  check(ok, what, err.data ? err.data : "accepted");
  printf("%s reject %s\n", ok ? "ok  " : "FAIL", what);
  rb_buf_free(&src);
  rb_buf_free(&err);
}

int main(void) {
  for (size_t m = 0; m < sizeof shapes / sizeof shapes[0]; m++)
    for (int k = CG_EMBED; k <= CG_ADD; k++) test_case((CgKind)k, &shapes[m]);

  CgKernel s = op_spec(CG_ATTENTION, &shapes[0]);
  s.op.kv_heads = 4;
  test_reject("gqa", s, "attention: heads (9) must be a multiple of kv_heads (4)");
  s = op_spec(CG_ATTENTION, &shapes[0]);
  s.op.head_dim = 36;
  test_reject("attention head_dim", s, "attention: head_dim (36) must be a multiple of 8 and at most 512");
  s = op_spec(CG_ROPE_KV, &shapes[0]);
  s.op.head_dim = 63;
  test_reject("rope odd head_dim", s, "rope_kv: head_dim (63) must be even for rotate-half RoPE");
  s = op_spec(CG_ROPE_KV, &shapes[0]);
  s.op.rope_theta = 0.0f;
  test_reject("rope theta", s, "rope_kv: rope_theta must be finite and > 1 (got 0)");
  s = op_spec(CG_RMSNORM, &shapes[0]);
  s.op.eps = -1.0f;
  test_reject("rmsnorm eps", s, "rmsnorm: eps must be finite and >= 0 (got -1)");
  s = op_spec(CG_ADD, &shapes[0]);
  s.op.dim = 0;
  test_reject("add dim", s,
              "add: dimensions must be positive (dim 0, vocab 49152, heads 9, kv_heads 3, "
              "head_dim 64, max_ctx 8192)");

  printf("%d passed, %d failed\n", npass, nfail);
  return nfail ? 1 : 0;
}
