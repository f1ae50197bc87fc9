/* test_nvrtc.c: NVRTC on the CPU (no GPU needed): cubins for several archs,
 * user errors with the log, and a stable compiler identity for cache keys.
 * argv[1] names the case, so each shows as its own ctest entry. */
#include <stdio.h>
#include <string.h>

#include <nvrtc.h>

#include "runtime/jit/jit.h"

static int failures;

#define EXPECT(cond)                                                        \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);   \
      failures++;                                                           \
    }                                                                       \
  } while (0)

static const char *good_src =
    "extern \"C\" __global__ void fill(unsigned *out, unsigned n, unsigned seed) {\n"
    "  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  if (i < n) out[i] = i * 2654435761u ^ seed;\n"
    "}\n";

/* (1) A small kernel compiles to an ELF cubin for each arch we target. */
static void test_compile_archs(void) {
  const char *archs[] = {"sm_80", "sm_89", "sm_90", "sm_90a"};
  for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
    void *bin = NULL;
    size_t len = 0;
    RbBuf log = {0};
    int rc = rt_nvrtc_compile(good_src, "fill.cu", archs[i], NULL, 0, &bin, &len, &log);
    if (rc != RB_OK)
      fprintf(stderr, "%s: rc %d\n%s", archs[i], rc, log.data ? log.data : "");
    EXPECT(rc == RB_OK);
    EXPECT(bin != NULL && len > 4);
    if (bin && len > 4)
      EXPECT(memcmp(bin, "\x7f" "ELF", 4) == 0);
    rb_free(bin);
    rb_buf_free(&log);
  }
  /* The defaults never include fast math: kernels must match CPU references. */
  for (int i = 0; i < rt_nvrtc_default_nopts; i++)
    EXPECT(strstr(rt_nvrtc_default_opts[i], "fast") == NULL);
}

/* (2) A syntax error is the user's: RB_EUSER, no cubin, and the log names
 * the program, the line and the error. */
static void test_syntax_error(void) {
  const char *bad =
      "extern \"C\" __global__ void k(int *p) {\n"
      "  p[0] = 1\n"
      "}\n";
  void *bin = (void *)1;
  size_t len = 1;
  RbBuf log = {0};
  int rc = rt_nvrtc_compile(bad, "bad.cu", "sm_90", NULL, 0, &bin, &len, &log);
  EXPECT(rc == RB_EUSER);
  EXPECT(bin == NULL && len == 0);
  EXPECT(log.data != NULL);
  if (log.data) {
    fprintf(stderr, "log (expected):\n%s", log.data);
    EXPECT(strstr(log.data, "bad.cu(") != NULL);
    EXPECT(strstr(log.data, "error") != NULL);
    EXPECT(strstr(log.data, "expected a \";\"") != NULL);
  }
  rb_buf_free(&log);
}

/* An unknown extra option is also the caller's error, with NVRTC's words. */
static void test_bad_option(void) {
  const char *opts[] = {"--no-such-option"};
  void *bin = NULL;
  size_t len = 0;
  RbBuf log = {0};
  int rc = rt_nvrtc_compile(good_src, "fill.cu", "sm_90", opts, 1, &bin, &len, &log);
  EXPECT(rc == RB_EUSER);
  EXPECT(bin == NULL);
  EXPECT(log.data != NULL && strstr(log.data, "fill.cu") != NULL);
  if (log.data)
    fprintf(stderr, "log (expected):\n%s", log.data);
  rb_buf_free(&log);

  /* A valid extra option passes through. */
  const char *ok[] = {"-DRABIT_TEST_VALUE=3"};
  const char *src = "#if RABIT_TEST_VALUE != 3\n#error no define\n#endif\n"
                    "extern \"C\" __global__ void k(int *p) { p[0] = RABIT_TEST_VALUE; }\n";
  rc = rt_nvrtc_compile(src, "def.cu", "sm_90", ok, 1, &bin, &len, &log);
  EXPECT(rc == RB_OK);
  if (rc != RB_OK && log.data)
    fprintf(stderr, "%s", log.data);
  rb_free(bin);
  rb_buf_free(&log);
}

/* (3) The id names the version and a builtins digest, and never changes. */
static void test_id(void) {
  const char *a = rt_nvrtc_id();
  const char *b = rt_nvrtc_id();
  EXPECT(a != NULL && a[0] != 0);
  EXPECT(a == b && strcmp(a, b) == 0);
  EXPECT(strncmp(a, "nvrtc ", 6) == 0);
  int major = 0, minor = 0;
  EXPECT(nvrtcVersion(&major, &minor) == NVRTC_SUCCESS);
  char ver[64];
  snprintf(ver, sizeof ver, "nvrtc %d.%d builtins ", major, minor);
  EXPECT(strncmp(a, ver, strlen(ver)) == 0);
  EXPECT(strstr(a, "builtins ") != NULL);
  printf("rt_nvrtc_id: %s\n", a);
}

/* Whether the n bytes at p contain the string s (a section name in a cubin). */
static int has_string(const void *p, size_t n, const char *s) {
  size_t m = strlen(s);
  for (size_t i = 0; i + m <= n; i++)
    if (memcmp((const char *)p + i, s, m) == 0)
      return 1;
  return 0;
}

/* (4) The default options build cubins without line tables or the embedded
 * PTX text (they cost compile time and bytes, never SASS); -lineinfo still
 * adds them when asked, which also shows that the check below can fail. */
static void test_no_line_tables(void) {
  const char *li[] = {"-lineinfo"};
  for (int with = 0; with < 2; with++) {
    void *bin = NULL;
    size_t len = 0;
    RbBuf log = {0};
    int rc = rt_nvrtc_compile(good_src, "fill.cu", "sm_90", li, with, &bin, &len, &log);
    EXPECT(rc == RB_OK);
    if (rc == RB_OK) {
      EXPECT(has_string(bin, len, ".debug_line") == with);
      EXPECT(has_string(bin, len, ".nv_debug_ptx_txt") == with);
    }
    rb_free(bin);
    rb_buf_free(&log);
  }
  int minimal = 0;
  for (int i = 0; i < rt_nvrtc_default_nopts; i++) {
    EXPECT(strcmp(rt_nvrtc_default_opts[i], "-lineinfo") != 0);
    minimal += strcmp(rt_nvrtc_default_opts[i], "-minimal") == 0;
  }
  EXPECT(minimal == 1);
}

/* (5) -minimal (a default) drops the texture and device-runtime declarations
 * to shorten the front end: a kernel that used them fails to compile, with
 * NVRTC's words, rather than building silently without the defaults. */
static void test_minimal(void) {
  const char *src = "extern \"C\" __global__ void k(cudaTextureObject_t t, float *y) { y[0] = tex1Dfetch<float>(t, 0); }\n";
  void *bin = NULL;
  size_t len = 0;
  RbBuf log = {0};
  int rc = rt_nvrtc_compile(src, "tex.cu", "sm_90", NULL, 0, &bin, &len, &log);
  EXPECT(rc == RB_EUSER);
  EXPECT(log.data && strstr(log.data, "cudaTextureObject_t") != NULL);
  rb_free(bin);
  rb_buf_free(&log);
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "all";
  int all = strcmp(which, "all") == 0, ran = 0;
  if (all || strcmp(which, "compile_archs") == 0)
    test_compile_archs(), ran++;
  if (all || strcmp(which, "syntax_error") == 0)
    test_syntax_error(), ran++;
  if (all || strcmp(which, "bad_option") == 0)
    test_bad_option(), ran++;
  if (all || strcmp(which, "id") == 0)
    test_id(), ran++;
  if (all || strcmp(which, "no_line_tables") == 0)
    test_no_line_tables(), ran++;
  if (all || strcmp(which, "minimal") == 0)
    test_minimal(), ran++;
  if (!ran) {
    fprintf(stderr, "unknown case %s\n", which);
    return 2;
  }
  if (failures)
    fprintf(stderr, "%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
