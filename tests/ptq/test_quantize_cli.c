/* test_quantize_cli: `rabit quantize MODEL.ir IN -o OUT` end to end. Writes
 * a safetensors file of samples/tiny.ir's shapes by hand (random F32, F16 and
 * BF16 weights, norms, an embedding), runs the driver, reads the result back
 * and checks that the IR chose the k of every linear (v_proj 3 and down_proj 1
 * by their own quant, the rest the file's default or --paths), names, shapes,
 * dtypes, metadata, byte-identical copies, that the signs are RaBiT's coupled
 * signs for the stored f16 scales, and that the dequantized weights have the
 * error the driver printed. Then the error paths: exit status and message.
 * usage: test_quantize_cli RABIT_BINARY SAMPLES_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/formats/formats.h"
#include "tests/common/check.h"


static const char *rabit;
static char dir[64], ir[1024];

/* ---- a hand-written safetensors writer, independent of the runtime's ---- */

typedef struct {
  const char *name, *dtype;
  int rank;
  int64_t shape[3];
  void *data;
  size_t nbytes;
} In;

static void write_st(const char *path, const In *t, int n) {
  char hdr[16384];
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
  char cmd[4096];
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

/* samples/tiny.ir's tensors, in Hugging Face order: the copied ones (k = 0)
 * and the linears with the k the file gives them without --paths (-1: the
 * file's default, 2). */
#define MAXT 24
typedef struct {
  char name[96], base[96];
  int N, K, k;
} Spec;
static Spec spec[MAXT];
static In t[MAXT];
static float *vals[MAXT];
static int nt;

static void add(const char *base, const char *dtype, int N, int K, int k) {
  Spec *s = &spec[nt];
  snprintf(s->base, sizeof s->base, "%s", base);
  snprintf(s->name, sizeof s->name, "%s.weight", base);
  s->N = N, s->K = K, s->k = k;
  t[nt] = (In){.name = s->name, .dtype = dtype, .rank = K ? 2 : 1, .shape = {N, K}};
  double sd = k ? 0.02 : 1.0;
  t[nt].data = random_data(dtype, (size_t)N * (K ? K : 1), sd, &vals[nt], &t[nt].nbytes);
  nt++;
}

static void make_tiny(void) {
  static const char *const dts[3] = {"F32", "F16", "BF16"};
  static const struct {
    const char *name;
    int N, K, k;
  } lin[7] = {{"self_attn.q_proj", 64, 64, -1}, {"self_attn.k_proj", 32, 64, -1}, {"self_attn.v_proj", 32, 64, 3},
              {"self_attn.o_proj", 64, 64, -1}, {"mlp.gate_proj", 160, 64, -1},    {"mlp.up_proj", 160, 64, -1},
              {"mlp.down_proj", 64, 160, 1}};
  char b[96];
  add("model.embed_tokens", "F16", 256, 64, 0);
  for (int l = 0, d = 0; l < 2; l++) {
    snprintf(b, sizeof b, "model.layers.%d.input_layernorm", l);
    add(b, "F32", 64, 0, 0);
    for (int i = 0; i < 7; i++) {
      if (i == 4) {
        snprintf(b, sizeof b, "model.layers.%d.post_attention_layernorm", l);
        add(b, "F16", 64, 0, 0);
      }
      snprintf(b, sizeof b, "model.layers.%d.%s", l, lin[i].name);
      add(b, dts[d++ % 3], lin[i].N, lin[i].K, lin[i].k);
    }
  }
  add("model.norm", "F32", 64, 0, 0);
}

/* The k spec i must have with --paths override (0 = none). */
static int want_k(int i, int override) {
  return spec[i].k < 0 ? (override ? override : 2) : spec[i].k;
}

/* The quantized weight i in OUT: layout, coupled signs, and the error the log
 * reports. The word count and bit order are spelled out here on purpose: an
 * independent reading of DESIGN's format, not packed.c's. */
static void check_layer(const RtSafetensors *st, int i, const char *log, int k) {
  const char *base = spec[i].base;
  const float *W = vals[i];
  int N = spec[i].N, K = spec[i].K, words = (K + 31) / 32;
  char name[128];
  snprintf(name, sizeof name, "%s.bits", base);
  const RtTensor *tb = rt_st_find(st, name);
  snprintf(name, sizeof name, "%s.g", base);
  const RtTensor *tg = rt_st_find(st, name);
  snprintf(name, sizeof name, "%s.h", base);
  const RtTensor *th = rt_st_find(st, name);
  CHECK(!rt_st_find(st, spec[i].name), "%s is still in the output", spec[i].name);
  CHECK(tb && tb->dtype == RT_I32 && tb->rank == 3 && tb->shape[0] == k && tb->shape[1] == N &&
            tb->shape[2] == words,
        "%s.bits: missing or not I32 [%d, %d, %d]", base, k, N, words);
  CHECK(tg && tg->dtype == RT_F16 && tg->rank == 2 && tg->shape[0] == k && tg->shape[1] == N,
        "%s.g: missing or not F16 [%d, %d]", base, k, N);
  CHECK(th && th->dtype == RT_F16 && th->rank == 2 && th->shape[0] == k && th->shape[1] == K,
        "%s.h: missing or not F16 [%d, %d]", base, k, K);
  if (!tb || !tg || !th || tb->rank != 3 || tg->rank != 2 || th->rank != 2 || tb->shape[0] != k) return;

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
  CHECK(!bad, "%s: %d signs are not the coupled sign(R_{p-1})", base, bad);
  CHECK(!pad, "%s: %d pad bits set", base, pad);
  double num = 0.0, den = 0.0;
  for (size_t e = 0; e < (size_t)N * K; e++) {
    num += pow((double)W[e] - Wh[e], 2);
    den += pow((double)W[e], 2);
  }
  /* The log line: "[ i/n] <base> N x K dtype k=K rel_err E ...". */
  double err = sqrt(num / den), reported = -1.0;
  char key[128];
  snprintf(key, sizeof key, "%s ", base);
  const char *line = strstr(log, key);
  const char *at = line ? strstr(line, "rel_err ") : NULL;
  char kk[16];
  snprintf(kk, sizeof kk, "k=%d ", k);
  CHECK(line && strstr(line, kk) && strstr(line, kk) < at, "%s: the log line does not say %s", base, kk);
  if (at) reported = atof(at + 8);
  CHECK(fabs(err - reported) <= 1e-6 + 1e-5 * err, "%s: dequantized error %.7f, reported %.7f", base, err,
        reported);
  /* Residual binarization of a Gaussian: about 0.60 after one path, each
   * further path taking off roughly 40%. */
  static const double lo[5] = {0, 0.50, 0.25, 0.12, 0.05}, hi[5] = {0, 0.65, 0.45, 0.32, 0.22};
  CHECK(err > lo[k] && err < hi[k], "%s: implausible %d-path error %.4f", base, k, err);
  free(R);
  free(Wh);
}

/* Every tensor of OUT as tiny.ir says with --paths override (0 = none):
 * the copies byte for byte, the quantized ones with their k. */
static void check_output(const char *out, const char *log, int override, const char *skip_prefix) {
  RtSafetensors *st = NULL;
  RbBuf err = {0};
  if (rt_st_open(out, &st, &err) != RB_OK) {
    CHECK(0, "cannot read the output: %s", err.data ? err.data : "");
    rb_buf_free(&err);
    return;
  }
  int want = 0;
  for (int i = 0; i < nt; i++) {
    int dense = !spec[i].k || (skip_prefix && !strncmp(spec[i].base, skip_prefix, strlen(skip_prefix)));
    want += dense ? 1 : 3;
    if (!dense) {
      check_layer(st, i, log, want_k(i, override));
      continue;
    }
    const RtTensor *c = rt_st_find(st, t[i].name);
    CHECK(c && !strcmp(rt_dtype_name(c->dtype), t[i].dtype) && c->nbytes == t[i].nbytes &&
              !memcmp(c->data, t[i].data, t[i].nbytes),
          "%s is not copied byte for byte", t[i].name);
  }
  CHECK(rt_st_count(st) == want, "%d tensors in the output, want %d", rt_st_count(st), want);
  char num[8];
  snprintf(num, sizeof num, "%d", override ? override : 2);
  const char *fmt = rt_st_meta(st, "format"), *paths = rt_st_meta(st, "paths");
  const char *model = rt_st_meta(st, "model"), *irm = rt_st_meta(st, "rabit_ir_model");
  CHECK(fmt && !strcmp(fmt, "rabit-packed 1"), "metadata format '%s'", fmt ? fmt : "(none)");
  CHECK(paths && !strcmp(paths, num), "metadata paths '%s', want %s", paths ? paths : "(none)", num);
  CHECK(model && !strcmp(model, "tiny-test"), "metadata model not carried over");
  CHECK(irm && !strcmp(irm, "tiny"), "metadata rabit_ir_model '%s'", irm ? irm : "(none)");
  rt_st_close(st);
  rb_buf_free(&err);
}

/* Write IN with spec i replaced by r (or left out when r is NULL) and expect
 * quantize to refuse it. */
static void expect_bad_input(const char *name, int i, const In *r, const char *want) {
  In v[MAXT];
  int n = 0;
  for (int j = 0; j < nt; j++)
    if (j != i) v[n++] = t[j];
    else if (r) v[n++] = *r;
  char bad[128], args[2048];
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  write_st(bad, v, n);
  snprintf(args, sizeof args, "'%s' %s -o %s/out.safetensors", ir, bad, dir);
  expect(name, args, 1, want);
}

/* The index of the spec whose base is base. */
static int find_spec(const char *base) {
  for (int i = 0; i < nt; i++)
    if (!strcmp(spec[i].base, base)) return i;
  return -1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    printf("usage: test_quantize_cli RABIT_BINARY SAMPLES_DIR\n");
    return 2;
  }
  rabit = argv[1];
  snprintf(ir, sizeof ir, "%s/tiny.ir", argv[2]);
  snprintf(dir, sizeof dir, "/tmp/rabit-ptq-XXXXXX");
  if (!mkdtemp(dir)) return 2;
  make_tiny();
  char in[128], out[128], args[2048];
  snprintf(in, sizeof in, "%s/in.safetensors", dir);
  snprintf(out, sizeof out, "%s/out.safetensors", dir);
  write_st(in, t, nt);

  /* The IR's own k: v_proj 3, down_proj 1, the rest the file's default 2. */
  snprintf(args, sizeof args, "'%s' %s -o %s --threads 2", ir, in, out);
  int rc = run(args);
  char *log = read_log();
  printf("%s", log);
  CHECK(rc == 0, "quantize failed: rc %d", rc);
  CHECK(strstr(log, "quantizing 14 weights") && strstr(log, "2 at k = 1, 10 at k = 2, 2 at k = 3"),
        "no plan line with the IR's k");
  CHECK(strstr(log, "overall rel_err"), "no summary line");
  if (rc == 0) check_output(out, log, 0, NULL);

  /* --paths 4 moves the default only: v_proj stays 3, down_proj 1. */
  snprintf(args, sizeof args, "%s -o %s '%s' --paths 4", in, out, ir);
  rc = run(args);
  CHECK(rc == 1, "the input before the IR was accepted: rc %d", rc);
  snprintf(args, sizeof args, "'%s' %s -o %s --paths 4", ir, in, out);
  rc = run(args);
  log = read_log();
  CHECK(rc == 0, "quantize --paths 4 failed: rc %d\n%s", rc, log);
  if (rc == 0) check_output(out, log, 4, NULL);

  /* --skip keeps weights full precision, byte for byte; T = 1. */
  snprintf(args, sizeof args, "'%s' --paths=3 --rounds 1 --skip 'layers\\.1\\.,nomatch' %s -o %s", ir, in, out);
  rc = run(args);
  log = read_log();
  CHECK(rc == 0, "quantize --skip failed: rc %d\n%s", rc, log);
  CHECK(strstr(log, "warning: --skip 'nomatch' matched no weight"), "no warning for an unused --skip item");
  CHECK(strstr(log, "keeping 7 weights full precision (--skip)"), "no line for the skipped weights");
  if (rc == 0) check_output(out, log, 3, "model.layers.1.");

  /* The input's order is not the IR's (an alphabetical file, say): the output follows the input. */
  In rev[MAXT];
  for (int i = 0; i < nt; i++) rev[i] = t[nt - 1 - i];
  write_st(in, rev, nt);
  snprintf(args, sizeof args, "'%s' %s -o %s --threads 3", ir, in, out);
  rc = run(args);
  log = read_log();
  CHECK(rc == 0, "quantize of a reversed file failed: rc %d\n%s", rc, log);
  if (rc == 0) check_output(out, log, 0, NULL);
  write_st(in, t, nt);

  /* An input that is already quantized is refused, naming the tensor. */
  char out2[160];
  snprintf(out2, sizeof out2, "%s/out2.safetensors", dir);
  snprintf(args, sizeof args, "'%s' %s -o %s", ir, out, out2);
  expect("already-quantized", args, 1, "'model.layers.0.self_attn.q_proj' is already quantized");

  /* Errors: exit status 1, a message that names the problem, no output file. */
  unlink(out);
  expect("help", "--help", 0, "usage: rabit quantize MODEL.ir IN.safetensors -o OUT.safetensors");
  snprintf(args, sizeof args, "--paths 2 %s -o %s", in, out);
  expect("old-form", args, 1, "usage: rabit quantize MODEL.ir IN.safetensors -o OUT.safetensors");
  snprintf(args, sizeof args, "'%s' %s/nope.safetensors -o %s", ir, dir, out);
  expect("missing-input", args, 1, "nope.safetensors");
  snprintf(args, sizeof args, "'%s' %s", ir, in);
  expect("no-output", args, 1, "no output file");
  snprintf(args, sizeof args, "'%s' --paths 5 %s -o %s", ir, in, out);
  expect("paths-range", args, 1, "--paths needs an integer 1..4, got '5'");
  snprintf(args, sizeof args, "'%s' --frobnicate %s -o %s", ir, in, out);
  expect("bad-option", args, 1, "unknown option '--frobnicate'");
  snprintf(args, sizeof args, "'%s' --skip '(' %s -o %s", ir, in, out);
  expect("bad-regex", args, 1, "--skip: bad regex '('");

  /* A bad IR: the frontend's diagnostics, with the line and caret. */
  char bad_ir[128];
  snprintf(bad_ir, sizeof bad_ir, "%s/bad.ir", dir);
  FILE *f = fopen(bad_ir, "w");
  fprintf(f, "rabit 1\nmodel \"bad\"\ngraph f(x: f32[T, 8]) -> f32[T, 4] {\n  return linear(x, 4, quant = rabit(paths = 7))"
             " @weights(\"w\")\n}\n");
  fclose(f);
  snprintf(args, sizeof args, "%s %s -o %s", bad_ir, in, out);
  expect("bad-ir", args, 1, "bad.ir:4:");
  expect("bad-ir-message", args, 1, "quant paths must be 1..4, got 7");
  /* An IR that quantizes nothing. */
  f = fopen(bad_ir, "w");
  fprintf(f, "rabit 1\nmodel \"dense\"\ngraph f(x: f32[T, 8]) -> f32[T, 4] {\n  return linear(x, 4, quant = none)"
             " @weights(\"w\")\n}\n");
  fclose(f);
  expect("nothing-to-quantize", args, 1, "the IR quantizes no linear");

  /* Inputs that disagree with the IR: each names the file and the tensor. */
  int v1 = find_spec("model.layers.1.self_attn.v_proj"), k0 = find_spec("model.layers.0.self_attn.k_proj");
  int q0 = find_spec("model.layers.0.self_attn.q_proj");
  expect_bad_input("missing-weight", v1, NULL,
                   "no tensor 'model.layers.1.self_attn.v_proj.weight', which the IR (");
  expect_bad_input("missing-weight-line", v1, NULL, "tiny.ir:19) binds");
  expect_bad_input("missing-weight-file", v1, NULL, "bad.safetensors: no tensor");
  In wide = t[q0];
  wide.name = t[k0].name; /* [64, 64] where the IR says [32, 64] */
  expect_bad_input("shape", k0, &wide,
                   "bad.safetensors: 'model.layers.0.self_attn.k_proj.weight' is [64, 64] but the IR (");
  expect_bad_input("shape-ir", k0, &wide, "tiny.ir:18) says [N, K] = [32, 64]");
  int32_t ints[64 * 64] = {0};
  In idt = {t[q0].name, "I32", 2, {64, 64}, ints, sizeof ints};
  expect_bad_input("wrong-dtype", q0, &idt,
                   "'model.layers.0.self_attn.q_proj.weight' has dtype I32; quantize reads F16, BF16 or F32");
  float f3[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  In r3 = {t[q0].name, "F32", 3, {2, 2, 2}, f3, sizeof f3};
  expect_bad_input("not-2d", q0, &r3, "'model.layers.0.self_attn.q_proj.weight' is [2, 2, 2] but the IR");
  /* A weight the fit refuses, found by a worker while others run. */
  int u1 = find_spec("model.layers.1.mlp.up_proj");
  float *nan_w = calloc(160 * 64, sizeof *nan_w);
  nan_w[64 * 7 + 5] = NAN;
  In nan_in = {t[u1].name, "F32", 2, {160, 64}, nan_w, 160 * 64 * sizeof *nan_w};
  expect_bad_input("not-finite", u1, &nan_in, "'model.layers.1.mlp.up_proj.weight': weight (7, 5) is not finite");
  free(nan_w);
  CHECK(access(out, F_OK) != 0, "a failed run left %s behind", out);

  for (int i = 0; i < nt; i++) {
    free(t[i].data);
    free(vals[i]);
  }
  snprintf(args, sizeof args, "rm -rf '%s'", dir);
  if (system(args)) printf("could not remove %s\n", dir);
  return CHECK_SUMMARY();
}
