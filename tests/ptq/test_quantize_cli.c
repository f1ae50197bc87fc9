/* test_quantize_cli: `rabit quantize` end to end. Writes a small Llama-named
 * safetensors file by hand (F32, F16 and BF16 weights, norms, an embedding),
 * runs the driver, reads the result back and checks names, shapes, dtypes,
 * metadata, byte-identical copies, that the signs are RaBiT's coupled signs
 * for the stored f16 scales, and that the dequantized weights have the error
 * the driver printed. Then the error paths: their exit status and message.
 * usage: test_quantize_cli RABIT_BINARY */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/formats/formats.h"
#include "tests/common/check.h"


static const char *rabit;
static char dir[64];

/* ---- a hand-written safetensors writer, independent of the runtime's ---- */

typedef struct {
  const char *name, *dtype;
  int rank;
  int64_t shape[3];
  void *data;
  size_t nbytes;
} In;

static void write_st(const char *path, const In *t, int n) {
  char hdr[8192];
  size_t len = 0, off = 0;
  len += (size_t)snprintf(hdr + len, sizeof hdr - len, "{\"__metadata__\":{\"model\":\"tiny-test\"}");
  for (int i = 0; i < n; i++) {
    len += (size_t)snprintf(hdr + len, sizeof hdr - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name,
                            t[i].dtype);
    for (int d = 0; d < t[i].rank; d++)
      len += (size_t)snprintf(hdr + len, sizeof hdr - len, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
    len += (size_t)snprintf(hdr + len, sizeof hdr - len, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].nbytes);
    off += t[i].nbytes;
  }
  len += (size_t)snprintf(hdr + len, sizeof hdr - len, "}");
  FILE *f = fopen(path, "wb");
  uint64_t l = len;
  unsigned char l8[8];
  for (int i = 0; i < 8; i++) l8[i] = (unsigned char)(l >> (8 * i));
  fwrite(l8, 1, 8, f);
  fwrite(hdr, 1, len, f);
  for (int i = 0; i < n; i++) fwrite(t[i].data, 1, t[i].nbytes, f);
  fclose(f);
}

static uint64_t rng_state = 42;
static double rng_gauss(void) {
  double u[2];
  for (int i = 0; i < 2; i++) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    u[i] = (((z ^ (z >> 31)) >> 11) + 0.5) / 9007199254740992.0;
  }
  return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* Random tensor data of n elements in dtype dt ("F32", "F16", "BF16"); also
 * the float value of each element (what the quantizer sees). */
static void *random_data(const char *dt, size_t n, double sd, float **vals, size_t *nbytes) {
  *vals = malloc(n * sizeof **vals);
  size_t es = strcmp(dt, "F32") ? 2 : 4;
  unsigned char *d = malloc(n * es);
  for (size_t i = 0; i < n; i++) {
    float f = (float)(sd * rng_gauss());
    if (es == 4) memcpy(d + 4 * i, &f, 4);
    else {
      uint16_t u;
      if (!strcmp(dt, "F16")) {
        u = rb_f16_from_f32(f);
        f = rb_f32_from_f16(u);
      } else { /* BF16 by truncation: the reader must not care how it was made */
        uint32_t x;
        memcpy(&x, &f, 4);
        u = (uint16_t)(x >> 16);
        x = (uint32_t)u << 16;
        memcpy(&f, &x, 4);
      }
      memcpy(d + 2 * i, &u, 2);
    }
    (*vals)[i] = f;
  }
  *nbytes = n * es;
  return d;
}

/* Run a shell command line, output to dir/log; returns the exit status. */
static int run(const char *args) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "'%s' quantize %s > %s/log 2>&1", rabit, args, dir);
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *read_log(void) {
  static char buf[65536];
  char path[128];
  snprintf(path, sizeof path, "%s/log", dir);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f) fclose(f);
  buf[n] = 0;
  return buf;
}

static void expect(const char *name, const char *args, int want_rc, const char *want) {
  int rc = run(args);
  const char *log = read_log();
  CHECK(rc == want_rc && strstr(log, want), "%s: rc %d (want %d), want '%s' in:\n%s", name, rc, want_rc, want, log);
}

#define NLIN 3
static const struct {
  const char *name, *dtype;
  int N, K;
} lin[NLIN] = {
    {"model.layers.0.self_attn.q_proj", "F32", 40, 48},
    {"model.layers.0.mlp.down_proj", "F16", 48, 70},
    {"model.layers.1.self_attn.k_proj", "BF16", 24, 48},
};

/* The quantized layer i in OUT: layout, coupled signs, and the error the log reports. */
static void check_layer(const RtSafetensors *st, int i, const float *W, const char *log, int k) {
  int N = lin[i].N, K = lin[i].K, words = (K + 31) / 32;
  char name[128];
  snprintf(name, sizeof name, "%s.bits", lin[i].name);
  const RtTensor *tb = rt_st_find(st, name);
  snprintf(name, sizeof name, "%s.g", lin[i].name);
  const RtTensor *tg = rt_st_find(st, name);
  snprintf(name, sizeof name, "%s.h", lin[i].name);
  const RtTensor *th = rt_st_find(st, name);
  snprintf(name, sizeof name, "%s.weight", lin[i].name);
  CHECK(!rt_st_find(st, name), "%s is still in the output", name);
  CHECK(tb && tb->dtype == RT_I32 && tb->rank == 3 && tb->shape[0] == k && tb->shape[1] == N &&
            tb->shape[2] == words,
        "%s.bits: missing or not I32 [%d, %d, %d]", lin[i].name, k, N, words);
  CHECK(tg && tg->dtype == RT_F16 && tg->rank == 2 && tg->shape[0] == k && tg->shape[1] == N,
        "%s.g: missing or not F16 [%d, %d]", lin[i].name, k, N);
  CHECK(th && th->dtype == RT_F16 && th->rank == 2 && th->shape[0] == k && th->shape[1] == K,
        "%s.h: missing or not F16 [%d, %d]", lin[i].name, k, K);
  if (!tb || !tg || !th || tb->rank != 3 || tg->rank != 2 || th->rank != 2) return;

  /* Coupled re-derivation from W with the stored scales, by the contract's
   * float recipe, and the dequantized W_hat in double. */
  float *R = malloc((size_t)N * K * sizeof *R);
  double *Wh = calloc((size_t)N * K, sizeof *Wh);
  memcpy(R, W, (size_t)N * K * sizeof *R);
  int bad = 0, pad = 0;
  for (int p = 0; p < k; p++)
    for (int n = 0; n < N; n++) {
      uint16_t g16;
      memcpy(&g16, (const char *)tg->data + 2 * ((size_t)p * N + n), 2);
      float gn = rb_f32_from_f16(g16);
      for (int w = 0; w < words; w++) {
        uint32_t word;
        memcpy(&word, (const char *)tb->data + 4 * (((size_t)p * N + n) * words + w), 4);
        for (int b = 0; b < 32; b++) {
          int j = 32 * w + b, bit = (word >> b) & 1u;
          if (j >= K) {
            pad += bit;
            continue;
          }
          uint16_t h16;
          memcpy(&h16, (const char *)th->data + 2 * ((size_t)p * K + j), 2);
          float hj = rb_f32_from_f16(h16), gh = gn * hj;
          size_t e = (size_t)n * K + j;
          bad += bit != (R[e] < 0.0f);
          R[e] = bit ? R[e] + gh : R[e] - gh;
          Wh[e] += (bit ? -1.0 : 1.0) * (double)gn * hj;
        }
      }
    }
  CHECK(!bad, "%s: %d signs are not the coupled sign(R_{p-1})", lin[i].name, bad);
  CHECK(!pad, "%s: %d pad bits set", lin[i].name, pad);
  double num = 0.0, den = 0.0;
  for (size_t e = 0; e < (size_t)N * K; e++) {
    num += pow((double)W[e] - Wh[e], 2);
    den += pow((double)W[e], 2);
  }
  double err = sqrt(num / den), reported = -1.0;
  const char *line = strstr(log, lin[i].name);
  const char *at = line ? strstr(line, "rel_err ") : NULL;
  if (at) reported = atof(at + 8);
  printf("%s: rel_err %.6f, reported %.6f\n", lin[i].name, err, reported);
  CHECK(fabs(err - reported) <= 1e-6 + 1e-5 * err, "%s: dequantized error %.7f, reported %.7f", lin[i].name, err,
        reported);
  CHECK(err > 0.1 && err < 0.45, "%s: implausible %d-path error %.4f", lin[i].name, k, err);
  free(R);
  free(Wh);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    printf("usage: test_quantize_cli RABIT_BINARY\n");
    return 2;
  }
  rabit = argv[1];
  snprintf(dir, sizeof dir, "/tmp/rabit-ptq-XXXXXX");
  if (!mkdtemp(dir)) return 2;

  /* The input model: three linears in the three input dtypes, an embedding,
   * two norms. */
  In t[8];
  float *vals[8];
  int n = 0;
  t[n] = (In){.name = "model.embed_tokens.weight", .dtype = "F32", .rank = 2, .shape = {10, 48}};
  t[n].data = random_data("F32", 480, 1.0, &vals[n], &t[n].nbytes), n++;
  for (int i = 0; i < NLIN; i++) {
    t[n] = (In){.dtype = lin[i].dtype, .rank = 2, .shape = {lin[i].N, lin[i].K}};
    static char names[NLIN][128];
    snprintf(names[i], sizeof names[i], "%s.weight", lin[i].name);
    t[n].name = names[i];
    t[n].data = random_data(lin[i].dtype, (size_t)lin[i].N * lin[i].K, 0.02, &vals[n], &t[n].nbytes), n++;
    if (i == 0) {
      t[n] = (In){.name = "model.layers.0.input_layernorm.weight", .dtype = "F32", .rank = 1, .shape = {48}};
      t[n].data = random_data("F32", 48, 1.0, &vals[n], &t[n].nbytes), n++;
    }
  }
  t[n] = (In){.name = "model.norm.weight", .dtype = "F16", .rank = 1, .shape = {48}};
  t[n].data = random_data("F16", 48, 1.0, &vals[n], &t[n].nbytes), n++;
  char in[128], out[128], args[1024];
  snprintf(in, sizeof in, "%s/in.safetensors", dir);
  snprintf(out, sizeof out, "%s/out.safetensors", dir);
  write_st(in, t, n);

  /* The happy path, k = 2. */
  snprintf(args, sizeof args, "--paths 2 %s -o %s --threads 2", in, out);
  int rc = run(args);
  char *log = read_log();
  printf("%s", log);
  CHECK(rc == 0, "quantize failed: rc %d", rc);
  RtSafetensors *st = NULL;
  RbBuf err = {0};
  if (rc == 0 && rt_st_open(out, &st, &err) == RB_OK) {
    CHECK(rt_st_count(st) == 3 + 3 * NLIN, "%d tensors in the output, want %d", rt_st_count(st), 3 + 3 * NLIN);
    const char *fmt = rt_st_meta(st, "format"), *paths = rt_st_meta(st, "paths");
    CHECK(fmt && !strcmp(fmt, "rabit-packed 1"), "metadata format '%s'", fmt ? fmt : "(none)");
    CHECK(paths && !strcmp(paths, "2"), "metadata paths '%s'", paths ? paths : "(none)");
    const char *model = rt_st_meta(st, "model");
    CHECK(model && !strcmp(model, "tiny-test"), "metadata model not carried over");
    for (int i = 0; i < n; i++) {
      if (strstr(t[i].name, "_proj")) continue;
      const RtTensor *c = rt_st_find(st, t[i].name);
      CHECK(c && !strcmp(rt_dtype_name(c->dtype), t[i].dtype) && c->nbytes == t[i].nbytes &&
                !memcmp(c->data, t[i].data, t[i].nbytes),
            "%s is not copied byte for byte", t[i].name);
    }
    for (int i = 0, l = 0; i < n; i++)
      if (strstr(t[i].name, "_proj")) check_layer(st, l++, vals[i], log, 2);
    CHECK(strstr(log, "overall rel_err"), "no summary line");
    rt_st_close(st);
  } else {
    CHECK(0, "cannot read the output: %s", err.data ? err.data : "");
  }
  rb_buf_free(&err);

  /* --skip keeps a weight full precision, byte for byte; k = 3, T = 1. */
  snprintf(args, sizeof args, "--paths=3 --rounds 1 --skip 'layers\\.1\\.,nomatch' %s -o %s", in, out);
  rc = run(args);
  log = read_log();
  CHECK(rc == 0, "quantize --skip failed: rc %d\n%s", rc, log);
  CHECK(strstr(log, "warning: --skip 'nomatch' matched no weight"), "no warning for an unused --skip item");
  if (rc == 0 && rt_st_open(out, &st, &err) == RB_OK) {
    const RtTensor *k = rt_st_find(st, "model.layers.1.self_attn.k_proj.weight");
    CHECK(k && k->dtype == RT_BF16 && !memcmp(k->data, t[4].data, t[4].nbytes), "skipped k_proj not copied");
    CHECK(!rt_st_find(st, "model.layers.1.self_attn.k_proj.bits"), "skipped k_proj was quantized");
    const char *paths = rt_st_meta(st, "paths");
    CHECK(paths && !strcmp(paths, "3"), "metadata paths '%s'", paths ? paths : "(none)");
    check_layer(st, 0, vals[1], log, 3);
    rt_st_close(st);
  }
  rb_buf_free(&err);

  /* Errors: exit status 1, a message that names the problem, no output file. */
  unlink(out);
  expect("help", "--help", 0, "usage: rabit quantize");
  snprintf(args, sizeof args, "--paths 2 %s/nope.safetensors -o %s", dir, out);
  expect("missing-input", args, 1, "nope.safetensors");
  snprintf(args, sizeof args, "--paths 2 %s", in);
  expect("no-output", args, 1, "no output file");
  snprintf(args, sizeof args, "--paths 5 %s -o %s", in, out);
  expect("paths-range", args, 1, "--paths needs an integer 1..4, got '5'");
  snprintf(args, sizeof args, "--frobnicate %s -o %s", in, out);
  expect("bad-option", args, 1, "unknown option '--frobnicate'");
  snprintf(args, sizeof args, "--skip '(' %s -o %s", in, out);
  expect("bad-regex", args, 1, "--skip: bad regex '('");

  int32_t ints[6] = {1, 2, 3, 4, 5, 6};
  float f3[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  In bad_dtype = {"model.layers.0.mlp.up_proj.weight", "I32", 2, {2, 3}, ints, sizeof ints};
  In bad_rank = {"model.layers.3.self_attn.o_proj.weight", "F32", 3, {2, 2, 2}, f3, sizeof f3};
  In none = {"model.norm.weight", "F32", 1, {8}, f3, sizeof f3};
  char bad[128];
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  snprintf(args, sizeof args, "%s -o %s", bad, out);
  write_st(bad, &bad_dtype, 1);
  expect("wrong-dtype", args, 1, "tensor 'model.layers.0.mlp.up_proj.weight' has dtype I32; quantize reads F16, BF16 or F32");
  write_st(bad, &bad_rank, 1);
  expect("not-2d", args, 1, "tensor 'model.layers.3.self_attn.o_proj.weight' has rank 3, not 2");
  write_st(bad, &none, 1);
  expect("nothing-to-quantize", args, 1, "no linear weights to quantize");
  CHECK(access(out, F_OK) != 0, "a failed run left %s behind", out);

  for (int i = 0; i < n; i++) {
    free(t[i].data);
    free(vals[i]);
  }
  snprintf(args, sizeof args, "rm -rf '%s'", dir);
  if (system(args)) printf("could not remove %s\n", dir);
  return CHECK_SUMMARY();
}
