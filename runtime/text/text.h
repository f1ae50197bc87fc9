/* text.h: text in and out of a model (prefix rt_): the byte-level BPE
 * tokenizer with its vocabulary files and chat template, and sampling. */
#ifndef RABIT_RUNTIME_TEXT_H
#define RABIT_RUNTIME_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "ir/base.h"
#include "runtime/formats/formats.h"

/* ==== bpe.c: byte-level BPE (GPT-2 style, as in SmolLM2's GGUF) ==== */

/* Encodes exactly as Hugging Face `tokenizers` does for the model: added
 * (special) tokens are cut out first, the rest is pre-split with the model's
 * regex (PCRE2), mapped through GPT-2's bytes-to-unicode table and merged by
 * rank per pre-token. A tokenizer is immutable once built: encode and decode
 * may run on several threads at once. */
typedef struct RtTokenizer RtTokenizer;

/* The raw vocabulary, as GGUF stores it. Strings need not be NUL-terminated;
 * everything is copied, so the arrays may be freed after rt_tok_create. */
typedef struct {
  const char *model;       /* tokenizer.ggml.model: must be "gpt2" */
  const char *pre;         /* tokenizer.ggml.pre: "smollm", "gpt2", ...; NULL = "default" */
  int ntokens;
  const char *const *tokens;
  const size_t *token_lens;
  const int32_t *token_types; /* GGUF token types (1 normal, 3 control, 4 user-defined); NULL = all normal */
  int nmerges;
  const char *const *merges;  /* "left right", in rank order */
  const size_t *merge_lens;
  int bos, eos;               /* -1 when the model has none */
} RtTokVocab;

/* Build a tokenizer from arrays. Errors (RB_EUSER: unknown model or
 * pre-tokenizer, a merge naming no token, a token with a NUL byte) are
 * appended to err; RB_EINTERNAL on allocation failure. */
int rt_tok_create(const RtTokVocab *v, RtTokenizer **out, RbBuf *err);
/* From the GGUF metadata: tokenizer.ggml.model, .tokens, .merges (required),
 * .token_type, .pre, .bos_token_id, .eos_token_id (optional). A missing or
 * mistyped key is RB_EUSER naming the key. */
int rt_tok_from_gguf(const RtGguf *g, RtTokenizer **out, RbBuf *err);
/* From the compact text vocabulary tests/tokenizer/make_reference.py writes
 * (format documented there). Errors are "path:line: message". */
int rt_tok_load_vocab(const char *path, RtTokenizer **out, RbBuf *err);
#define RT_TOK_MAX_VOCAB_BYTES (256ull << 20) /* a vocabulary file is read whole: 256 MiB at most */
/* Write a GGUF's tokenizer as a vocabulary file rt_tok_load_vocab reads
 * (`rabit import` puts one beside the weights as tokenizer.txt). */
int rt_tok_save_vocab(const RtGguf *g, const char *path, RbBuf *err);
void rt_tok_free(RtTokenizer *t);
int rt_tok_vocab(const RtTokenizer *t);
int rt_tok_bos(const RtTokenizer *t); /* -1 when none */
int rt_tok_eos(const RtTokenizer *t); /* -1 when none */
/* The id of a token by its stored text ("<|im_end|>", "Ġthe"), or -1. */
int rt_tok_find(const RtTokenizer *t, const char *piece);
/* A token's stored text (byte-level form, NUL-terminated), or NULL when id is out of range. */
const char *rt_tok_piece(const RtTokenizer *t, int id, size_t *len);
/* Encode UTF-8 text (no BOS added); *ids is rb_malloc'ed and non-NULL on
 * RB_OK, even when *n is 0. Invalid UTF-8 is not an error: bytes the regex
 * cannot read become pre-tokens of their own and are encoded as bytes. Like
 * HF, a byte whose symbol is not in the vocabulary is dropped.
 * RB_EINTERNAL on allocation or regex-engine failure. */
int rt_tok_encode(const RtTokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n);
/* Decode ids to bytes appended to out, token by token, so that a UTF-8
 * character split over two calls comes out whole once both are appended.
 * RB_EUSER (and nothing appended) if an id is out of range. */
int rt_tok_decode(const RtTokenizer *t, const int32_t *ids, size_t n, RbBuf *out);
/* The Instruct model's chat template (ChatML with SmolLM2's default system
 * prompt) around one user message, appended to out as text, ending with the
 * assistant header. Special-token text in user is not escaped, as with HF's
 * apply_chat_template. RB_EUSER when the vocabulary lacks <|im_start|>/<|im_end|>. */
int rt_tok_chat_prompt(const RtTokenizer *t, const char *user, RbBuf *out);

/* ==== sample.c: choosing the next token ==== */

typedef struct RtSampler RtSampler;

/* temp <= 0 is greedy (argmax). Otherwise softmax(logits / temp), kept to the
 * top_k most likely tokens (0: all), then to the smallest most-likely set that
 * holds top_p of their mass, sampled with a generator seeded by seed. */
RtSampler *rt_sampler_new(int vocab, float temp, int top_k, float top_p, uint64_t seed);
void rt_sampler_free(RtSampler *s);
int rt_sample(RtSampler *s, const float *logits);


#endif
