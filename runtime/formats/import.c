/* import.c: a llama.cpp GGUF Llama to Hugging Face safetensors + config.json
 * (the library half of `rabit import`): hyperparameters from the metadata,
 * llama.cpp names to HF names, Q/K rows un-permuted, F16 matrices, F32 norms.
 * tokenizer.txt is not written here: its format belongs to runtime/text,
 * which sits above formats (text.h includes formats.h), so this file cannot
 * call it without a cycle. The result keeps the GGUF open instead, and the
 * caller hands it to rt_tok_save_vocab: the file is mapped and checked once. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/formats/formats.h"

/* Written into __metadata__; bump when the layout of imported files changes. */
#define IMPORT_FORMAT_VERSION "1"

/* ---- hyperparameters ---- */

/* A required integer key "llama.<k>"; an error names it. */
static int need_u64(const RtGguf *g, const char *path, const char *k, uint64_t *v, RbBuf *err) {
  char key[128];
  snprintf(key, sizeof key, "llama.%s", k);
  if (rt_gguf_u64(g, key, v) && *v > 0 && *v < (1u << 30)) return 1;
  rb_buf_printf(err, "%s: error: metadata key '%s' is missing, not an integer, or out of range\n",
                path, key);
  return 0;
}

/* The model from the metadata, refusing what HF's Llama cannot express.
 * Returns 1, or 0 with the reason in err. */
static int model_read(const RtGguf *g, const char *path, RtImportModel *hp, RbBuf *err) {
  const char *arch;
  if (!rt_gguf_str(g, "general.architecture", &arch, NULL)) {
    rb_buf_printf(err, "%s: error: metadata key 'general.architecture' is missing\n", path);
    return 0;
  }
  if (strcmp(arch, "llama") != 0) {
    rb_buf_printf(err, "%s: error: architecture '%.60s' is not supported (only 'llama')\n", path,
                  arch);
    return 0;
  }
  hp->gguf_version = rt_gguf_version(g);
  if (!rt_gguf_str(g, "general.name", &hp->name, NULL)) hp->name = NULL;
  if (!need_u64(g, path, "block_count", &hp->layers, err) ||
      !need_u64(g, path, "embedding_length", &hp->dim, err) ||
      !need_u64(g, path, "feed_forward_length", &hp->ffn, err) ||
      !need_u64(g, path, "attention.head_count", &hp->heads, err))
    return 0;
  if (!rt_gguf_u64(g, "llama.attention.head_count_kv", &hp->kv_heads)) hp->kv_heads = hp->heads;
  if (!rt_gguf_u64(g, "llama.context_length", &hp->ctx)) hp->ctx = 2048;
  /* key_length is written when the head dim is not dim / heads. */
  if (!rt_gguf_u64(g, "llama.attention.key_length", &hp->head_dim)) hp->head_dim = hp->dim / hp->heads;
  uint64_t vlen, rope_dim;
  if (rt_gguf_u64(g, "llama.attention.value_length", &vlen) && vlen != hp->head_dim) {
    rb_buf_printf(err, "%s: error: value_length %" PRIu64 " differs from key_length %" PRIu64
                  " (not a Llama)\n", path, vlen, hp->head_dim);
    return 0;
  }
  if (hp->kv_heads == 0 || hp->heads % hp->kv_heads || hp->head_dim == 0 || hp->head_dim % 2) {
    rb_buf_printf(err, "%s: error: %" PRIu64 " heads, %" PRIu64 " KV heads and head dim %" PRIu64
                  " do not form a Llama attention\n", path, hp->heads, hp->kv_heads, hp->head_dim);
    return 0;
  }
  if (rt_gguf_u64(g, "llama.rope.dimension_count", &rope_dim) && rope_dim != hp->head_dim) {
    rb_buf_printf(err, "%s: error: partial RoPE (%" PRIu64 " of %" PRIu64
                  " dims) has no Hugging Face Llama equivalent\n", path, rope_dim, hp->head_dim);
    return 0;
  }
  const char *scaling;
  if (rt_gguf_str(g, "llama.rope.scaling.type", &scaling, NULL) && strcmp(scaling, "none") != 0) {
    rb_buf_printf(err, "%s: error: RoPE scaling '%.40s' is not supported by the import\n", path,
                  scaling);
    return 0;
  }
  if (!rt_gguf_f64(g, "llama.attention.layer_norm_rms_epsilon", &hp->eps) || !(hp->eps > 0)) {
    rb_buf_printf(err, "%s: error: metadata key 'llama.attention.layer_norm_rms_epsilon' is "
                  "missing or not a positive number\n", path);
    return 0;
  }
  if (!rt_gguf_f64(g, "llama.rope.freq_base", &hp->theta)) hp->theta = 10000.0; /* llama.cpp's default */
  if (!(hp->theta > 0)) {
    rb_buf_printf(err, "%s: error: llama.rope.freq_base must be positive\n", path);
    return 0;
  }
  const RtGgufTensor *emb = rt_gguf_find(g, "token_embd.weight");
  uint64_t ntok;
  int et;
  if (!rt_gguf_u64(g, "llama.vocab_size", &hp->vocab)) {
    if (rt_gguf_arr(g, "tokenizer.ggml.tokens", &et, &ntok)) hp->vocab = ntok;
    else if (emb && emb->rank == 2) hp->vocab = (uint64_t)emb->ne[1];
    else hp->vocab = 0;
  }
  hp->has_bos = rt_gguf_u64(g, "tokenizer.ggml.bos_token_id", &hp->bos);
  hp->has_eos = rt_gguf_u64(g, "tokenizer.ggml.eos_token_id", &hp->eos);
  hp->has_pad = rt_gguf_u64(g, "tokenizer.ggml.padding_token_id", &hp->pad);
  hp->tied = rt_gguf_find(g, "output.weight") == NULL;
  return 1;
}

/* The special token ids must name tokens of the vocabulary. One outside it
 * is refused rather than dropped: config.json would hand transformers a
 * token that does not exist, and leaving the key out is no better, since
 * LlamaConfig then falls back to bos 1 and eos 2, silently another model's
 * ids. The unknown-token id is not written, but the same file gives it to
 * the tokenizer, so it is held to the same rule. Returns 1 when all fit. */
static int check_token_ids(const RtGguf *g, const char *path, uint64_t vocab, RbBuf *err) {
  static const char *const keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                     "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    uint64_t id;
    double v;
    if (rt_gguf_u64(g, keys[i], &id)) {
      if (id < vocab) continue;
      rb_buf_printf(err, "%s: error: metadata key '%s' is %" PRIu64 ", outside the vocabulary of %" PRIu64
                    " tokens\n", path, keys[i], id, vocab);
      return 0;
    }
    int type = -1;
    for (int k = 0; k < rt_gguf_kv_count(g); k++) {
      int t;
      if (!strcmp(rt_gguf_kv_key(g, k, &t), keys[i])) type = t;
    }
    if (type < 0) continue; /* absent: config.json leaves it out */
    if (rt_gguf_f64(g, keys[i], &v))
      rb_buf_printf(err, "%s: error: metadata key '%s' is %.17g, not a token id (0..%" PRIu64 ")\n", path,
                    keys[i], v, vocab - 1);
    else
      rb_buf_printf(err, "%s: error: metadata key '%s' is not a number, not a token id (0..%" PRIu64 ")\n",
                    path, keys[i], vocab - 1);
    return 0;
  }
  return 1;
}

/* ---- the tensor map ---- */

enum { K_NORM, K_MATRIX, K_Q, K_K };

typedef struct {
  const char *gguf; /* per-layer names are relative to "blk.N." */
  const char *hf;   /* relative to "model.layers.N." */
  int kind;
} LayerMap;

static const LayerMap layer_map[] = {
    {"attn_norm.weight", "input_layernorm.weight", K_NORM},
    {"attn_q.weight", "self_attn.q_proj.weight", K_Q},
    {"attn_k.weight", "self_attn.k_proj.weight", K_K},
    {"attn_v.weight", "self_attn.v_proj.weight", K_MATRIX},
    {"attn_output.weight", "self_attn.o_proj.weight", K_MATRIX},
    {"ffn_norm.weight", "post_attention_layernorm.weight", K_NORM},
    {"ffn_gate.weight", "mlp.gate_proj.weight", K_MATRIX},
    {"ffn_up.weight", "mlp.up_proj.weight", K_MATRIX},
    {"ffn_down.weight", "mlp.down_proj.weight", K_MATRIX},
};
enum { N_LAYER_MAP = sizeof layer_map / sizeof layer_map[0] };

/* Expected GGUF ne[] (ggml order: [K, N] for a weight) for a mapped tensor. */
static void expected_ne(const RtImportModel *hp, const char *gguf_rel, int64_t ne[2], int *rank) {
  int64_t d = (int64_t)hp->dim, f = (int64_t)hp->ffn, hd = (int64_t)hp->head_dim;
  *rank = 2;
  ne[1] = 1;
  if (strstr(gguf_rel, "norm")) *rank = 1, ne[0] = d;
  else if (!strcmp(gguf_rel, "attn_q.weight")) ne[0] = d, ne[1] = (int64_t)hp->heads * hd;
  else if (!strcmp(gguf_rel, "attn_k.weight") || !strcmp(gguf_rel, "attn_v.weight"))
    ne[0] = d, ne[1] = (int64_t)hp->kv_heads * hd;
  else if (!strcmp(gguf_rel, "attn_output.weight")) ne[0] = (int64_t)hp->heads * hd, ne[1] = d;
  else if (!strcmp(gguf_rel, "ffn_down.weight")) ne[0] = f, ne[1] = d;
  else if (strstr(gguf_rel, "ffn_")) ne[0] = d, ne[1] = f;
  else ne[0] = d, ne[1] = (int64_t)hp->vocab; /* token_embd, output */
}

/* The conversion under way: the source, the writer, one shared buffer, and
 * the current stage's tally for its progress report. */
typedef struct {
  const char *path;
  const RtGguf *g;
  const RtImportModel *hp;
  RtStWriter *w;
  float *buf; /* large enough for the largest tensor */
  uint64_t bytes_out;
  int ntensors;
  int stage_tensors;
  char types[64]; /* the stage's distinct source types, "F32,Q4_K" */
  RbBuf *err;
} Job;

/* Add a GGUF type name to the stage's list unless it is there (or no room). */
static void job_type_add(Job *j, int ggml_type) {
  const char *tn = rt_ggml_type_name(ggml_type);
  if (!strstr(j->types, tn) && strlen(j->types) + strlen(tn) + 2 < sizeof j->types) {
    if (j->types[0]) strcat(j->types, ",");
    strcat(j->types, tn);
  }
}

/* One GGUF tensor to one HF tensor in the writer: shape checked against the
 * model, dequantized, Q/K un-permuted, F16 (F32 for norms). */
static int job_convert(Job *j, const char *gguf_name, const char *gguf_rel, const char *hf_name,
                       int kind) {
  const RtGgufTensor *t = rt_gguf_find(j->g, gguf_name);
  if (!t) {
    rb_buf_printf(j->err, "%s: error: tensor '%s' is missing\n", j->path, gguf_name);
    return RB_EUSER;
  }
  int64_t ne[2];
  int rank;
  expected_ne(j->hp, gguf_rel, ne, &rank);
  if (t->rank != rank || t->ne[0] != ne[0] || t->ne[1] != ne[1]) {
    rb_buf_printf(j->err, "%s: error: tensor '%s' has shape [%" PRId64 ", %" PRId64 "] (ggml "
                  "order), the metadata implies [%" PRId64 ", %" PRId64 "]\n", j->path,
                  gguf_name, t->ne[0], t->ne[1], ne[0], ne[1]);
    return RB_EUSER;
  }
  int rc = rt_gguf_dequant(t, j->buf, j->err);
  if (rc) return rc;
  /* GGUF ne = [K, N] is HF's [N, K] row-major: only the shape's order changes. */
  int64_t shape[2] = {t->ne[1], t->ne[0]};
  size_t n = (size_t)(t->ne[0] * t->ne[1]);
  if (kind == K_Q || kind == K_K) {
    int nh = (int)(kind == K_Q ? j->hp->heads : j->hp->kv_heads);
    rc = rt_gguf_unpermute_rows(j->buf, shape[0], shape[1], nh, j->err);
    if (rc) return rc;
  }
  if (kind == K_NORM) {
    rc = rt_st_writer_add(j->w, hf_name, RT_F32, 1, &shape[1], j->buf);
    j->bytes_out += n * 4;
  } else {
    /* fp16 in place over the float buffer's front: element i's half lands
     * at byte 2i, which never overtakes float i still to be read at 4i. */
    uint16_t *h = (uint16_t *)(void *)j->buf;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
      float v = j->buf[i];
      h[i] = rb_f16_from_f32(v);
      bad += (h[i] & 0x7c00) == 0x7c00; /* inf or nan after rounding */
    }
    if (bad) {
      rb_buf_printf(j->err, "%s: error: tensor '%s': %zu values are not finite in fp16\n",
                    j->path, gguf_name, bad);
      return RB_EUSER;
    }
    rc = rt_st_writer_add(j->w, hf_name, RT_F16, 2, shape, h);
    j->bytes_out += n * 2;
  }
  if (rc) {
    rb_buf_printf(j->err, "%s: error: cannot add tensor '%s' to the output\n", j->path, hf_name);
    return rc;
  }
  j->ntensors++;
  j->stage_tensors++;
  job_type_add(j, t->ggml_type);
  return RB_OK;
}

/* Report a finished stage (if anyone listens) and start the next tally. */
static void job_report(Job *j, const RtImportOptions *o, RtImportStage stage, int layer) {
  RtImportProgress p = {stage, layer, j->stage_tensors, j->types, j->hp};
  if (o->progress) o->progress(o->ctx, &p);
  j->stage_tensors = 0;
  j->types[0] = 0;
}

/* Every tensor in the order HF lists them, with a report after each stage. */
static int job_convert_all(Job *j, const RtImportOptions *o) {
  int rc;
  if ((rc = job_convert(j, "token_embd.weight", "token_embd.weight", "model.embed_tokens.weight",
                        K_MATRIX)))
    return rc;
  job_report(j, o, RT_IMPORT_EMBEDDINGS, 0);
  for (uint64_t l = 0; l < j->hp->layers; l++) {
    for (int k = 0; k < N_LAYER_MAP; k++) {
      char gn[96], hn[128];
      snprintf(gn, sizeof gn, "blk.%" PRIu64 ".%s", l, layer_map[k].gguf);
      snprintf(hn, sizeof hn, "model.layers.%" PRIu64 ".%s", l, layer_map[k].hf);
      if ((rc = job_convert(j, gn, layer_map[k].gguf, hn, layer_map[k].kind))) return rc;
    }
    job_report(j, o, RT_IMPORT_LAYER, (int)l);
  }
  if ((rc = job_convert(j, "output_norm.weight", "output_norm.weight", "model.norm.weight", K_NORM)))
    return rc;
  if (!j->hp->tied &&
      (rc = job_convert(j, "output.weight", "output.weight", "lm_head.weight", K_MATRIX)))
    return rc;
  job_report(j, o, RT_IMPORT_FINAL, 0);
  return RB_OK;
}

/* Every GGUF tensor must be one we map: dropping an unknown one silently
 * (a bias, rope_freqs) would give a model that loads and computes wrongly. */
static int check_known(const RtGguf *g, const char *path, const RtImportModel *hp, RbBuf *err) {
  int bad = 0;
  for (int i = 0; i < rt_gguf_count(g); i++) {
    const char *n = rt_gguf_tensor(g, i)->name;
    int ok = !strcmp(n, "token_embd.weight") || !strcmp(n, "output_norm.weight") ||
             !strcmp(n, "output.weight");
    unsigned layer;
    int used = 0;
    if (!ok && sscanf(n, "blk.%u.%n", &layer, &used) == 1 && used > 0 && layer < hp->layers)
      for (int k = 0; k < N_LAYER_MAP; k++) ok |= !strcmp(n + used, layer_map[k].gguf);
    if (!ok) {
      if (bad++ < 8)
        rb_buf_printf(err, "%s: error: tensor '%s' has no Hugging Face Llama equivalent\n", path, n);
    }
  }
  if (bad > 8) rb_buf_printf(err, "%s: error: ... and %d more unknown tensors\n", path, bad - 8);
  return bad == 0;
}

/* ---- config.json ---- */

/* The shortest decimal that reads back as the same float: the GGUF stores
 * eps and theta as float32, and 1e-05 reads better than 9.99999975e-06. */
static void put_float(RbBuf *b, float v) {
  char s[48];
  if (v == floorf(v) && fabsf(v) < 1e15f) { /* 100000.0, not 1e+05 */
    snprintf(s, sizeof s, "%.1f", (double)v);
    rb_buf_puts(b, s);
    return;
  }
  for (int p = 1; p <= 9; p++) {
    snprintf(s, sizeof s, "%.*g", p, (double)v);
    if (strtof(s, NULL) == v) break;
  }
  /* JSON needs a leading digit and accepts exponents; keep floats floats. */
  if (!strpbrk(s, ".eEn")) strcat(s, ".0");
  rb_buf_puts(b, s);
}

/* config.json for transformers' LlamaForCausalLM, appended to b. */
static void config_json(const RtImportModel *hp, RbBuf *b) {
  rb_buf_puts(b, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n");
  rb_buf_printf(b, "  \"hidden_size\": %" PRIu64 ",\n", hp->dim);
  rb_buf_printf(b, "  \"intermediate_size\": %" PRIu64 ",\n", hp->ffn);
  rb_buf_printf(b, "  \"num_hidden_layers\": %" PRIu64 ",\n", hp->layers);
  rb_buf_printf(b, "  \"num_attention_heads\": %" PRIu64 ",\n", hp->heads);
  rb_buf_printf(b, "  \"num_key_value_heads\": %" PRIu64 ",\n", hp->kv_heads);
  rb_buf_printf(b, "  \"head_dim\": %" PRIu64 ",\n", hp->head_dim);
  rb_buf_printf(b, "  \"vocab_size\": %" PRIu64 ",\n", hp->vocab);
  rb_buf_printf(b, "  \"max_position_embeddings\": %" PRIu64 ",\n", hp->ctx);
  rb_buf_puts(b, "  \"rms_norm_eps\": ");
  put_float(b, (float)hp->eps);
  rb_buf_puts(b, ",\n  \"rope_theta\": ");
  put_float(b, (float)hp->theta);
  rb_buf_puts(b, ",\n  \"rope_scaling\": null,\n  \"hidden_act\": \"silu\",\n");
  rb_buf_printf(b, "  \"tie_word_embeddings\": %s,\n", hp->tied ? "true" : "false");
  rb_buf_puts(b, "  \"attention_bias\": false,\n  \"attention_dropout\": 0.0,\n"
                 "  \"mlp_bias\": false,\n  \"initializer_range\": 0.02,\n"
                 "  \"pretraining_tp\": 1,\n  \"use_cache\": true,\n");
  if (hp->has_bos) rb_buf_printf(b, "  \"bos_token_id\": %" PRIu64 ",\n", hp->bos);
  if (hp->has_eos) rb_buf_printf(b, "  \"eos_token_id\": %" PRIu64 ",\n", hp->eos);
  if (hp->has_pad) rb_buf_printf(b, "  \"pad_token_id\": %" PRIu64 ",\n", hp->pad);
  if (hp->name) {
    rb_buf_puts(b, "  \"_name_or_path\": ");
    rb_buf_json_str(b, hp->name);
    rb_buf_puts(b, ",\n");
  }
  rb_buf_puts(b, "  \"torch_dtype\": \"float16\"\n}\n");
}

/* ---- the import ---- */

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

/* The messages below keep the command's wording ("rabit import:",
 * "--force"): they are what the user of `rabit import` reads. */
int rt_import_gguf(const RtImportOptions *o, RtImportResult *res, RbBuf *err) {
  const char *in = o->gguf, *outdir = o->outdir;
  memset(res, 0, sizeof *res);
  res->ntokens = -1;
  char *st_path = res->safetensors, *cfg_path = res->config;
  if ((size_t)snprintf(st_path, sizeof res->safetensors, "%s/model.safetensors", outdir) >=
          sizeof res->safetensors ||
      (size_t)snprintf(cfg_path, sizeof res->config, "%s/config.json", outdir) >= sizeof res->config) {
    rb_buf_printf(err, "rabit import: output directory name too long\n");
    return RB_EUSER;
  }
  /* Refuse before any work, so a long conversion never ends in a refusal. */
  if (!o->force) {
    const char *exists = access(st_path, F_OK) == 0 ? st_path : access(cfg_path, F_OK) == 0 ? cfg_path : NULL;
    if (exists) {
      rb_buf_printf(err, "rabit import: %s already exists (use --force to overwrite)\n", exists);
      return RB_EUSER;
    }
  }

  RtGguf *g = NULL;
  RtImportModel *hp = &res->model;
  RtStWriter *w = NULL;
  float *buf = NULL;
  RbBuf cfg = {0};
  int rc = rt_gguf_open(in, &g, err);
  if (rc) goto done;
  rc = RB_EUSER;
  if (!model_read(g, in, hp, err) || !check_known(g, in, hp, err)) goto done;
  if (!hp->name) hp->name = base_name(in);
  const RtGgufTensor *emb = rt_gguf_find(g, "token_embd.weight");
  if (!emb) {
    rb_buf_printf(err, "%s: error: tensor 'token_embd.weight' is missing\n", in);
    goto done;
  }
  if (hp->vocab == 0 || emb->rank != 2 || (uint64_t)emb->ne[1] != hp->vocab) {
    rb_buf_printf(err, "%s: error: vocabulary size %" PRIu64 " disagrees with token_embd.weight "
                  "[%" PRId64 ", %" PRId64 "]\n", in, hp->vocab, emb->ne[0], emb->ne[1]);
    goto done;
  }

  if (!check_token_ids(g, in, hp->vocab, err)) goto done;

  /* One buffer for the largest tensor: dequantize, fix up, convert in place. */
  uint64_t max_el = 0;
  for (int i = 0; i < rt_gguf_count(g); i++) {
    const RtGgufTensor *t = rt_gguf_tensor(g, i);
    uint64_t n = (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
    if (n > max_el) max_el = n;
  }
  if (max_el > SIZE_MAX / sizeof(float) || !(buf = rb_malloc((size_t)max_el * sizeof(float))) ||
      rt_st_writer_new(&w) != RB_OK) {
    rb_buf_printf(err, "%s: error: out of memory (%" PRIu64 " values)\n", in, max_el);
    rc = RB_EINTERNAL;
    goto done;
  }
  if (rb_mkdir_p(outdir, 0777) != 0) {
    rb_buf_printf(err, "rabit import: cannot create directory '%s': %s\n", outdir, strerror(errno));
    goto done;
  }

  Job j = {.path = in, .g = g, .hp = hp, .w = w, .buf = buf, .err = err};
  job_report(&j, o, RT_IMPORT_BEGIN, 0);
  if ((rc = job_convert_all(&j, o))) goto done;
  rb_free(buf);
  buf = NULL;
  /* "format": "pt" is what transformers requires of a safetensors file's metadata. */
  rt_st_writer_meta(w, "format", "pt");
  rt_st_writer_meta(w, "rabit_format", IMPORT_FORMAT_VERSION);
  rt_st_writer_meta(w, "rabit_version", RABIT_VERSION);
  rt_st_writer_meta(w, "model", hp->name);
  rt_st_writer_meta(w, "source", base_name(in));
  rt_st_writer_meta(w, "source_format", "gguf");
  rt_st_writer_meta(w, "qk_rope", "rotate_half");
  rc = rt_st_writer_finish(w, st_path, err);
  w = NULL;
  if (rc) goto done;
  config_json(hp, &cfg);
  if (cfg.oom) {
    rc = RB_EINTERNAL;
    goto done;
  }
  const void *part = cfg.data;
  if (rb_write_atomic(cfg_path, &part, &cfg.len, 1, NULL) != RB_OK) {
    rb_buf_printf(err, "rabit import: cannot write '%s': %s\n", cfg_path, strerror(errno));
    rc = RB_EUSER;
    goto done;
  }
  res->ntensors = j.ntensors;
  res->bytes = j.bytes_out;
  int et;
  uint64_t ntok;
  if (rt_gguf_arr(g, "tokenizer.ggml.tokens", &et, &ntok)) res->ntokens = (int64_t)ntok;
  res->gguf = g;
  g = NULL;
  rc = RB_OK;

done:
  if (rc) memset(res, 0, sizeof *res); /* model.name may point into the closed file */
  rt_st_writer_free(w);
  rb_free(buf);
  rb_buf_free(&cfg);
  rt_gguf_close(g);
  return rc;
}

void rt_import_result_free(RtImportResult *res) {
  rt_gguf_close(res->gguf);
  res->gguf = NULL;
}
