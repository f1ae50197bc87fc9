/* fuzz_tokenizer: libFuzzer target over the byte-level BPE (runtime/text/bpe.c)
 * with the test vocabulary: arbitrary bytes, valid UTF-8 or not, must encode
 * to ids inside the vocabulary, decode back without error, and never give
 * more bytes than went in (a byte whose symbol the vocabulary lacks is
 * dropped, as Hugging Face does; nothing is ever invented). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/text.h"

#ifndef FUZZ_VOCAB
#error "FUZZ_VOCAB: the vocabulary file the target loads"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static RtTokenizer *tokenizer(void) {
  static RtTokenizer *t;
  if (!t) {
    RbBuf err = {0};
    if (rt_tok_load_vocab(FUZZ_VOCAB, &t, &err) != RB_OK) {
      fprintf(stderr, "fuzz_tokenizer: %s", err.data ? err.data : "cannot load the vocabulary\n");
      abort();
    }
    rb_buf_free(&err);
  }
  return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 16)) return 0; /* long texts cost time, not coverage */
  RtTokenizer *t = tokenizer();
  int32_t *ids = NULL;
  size_t n = 0;
  if (rt_tok_encode(t, (const char *)data, size, &ids, &n) != RB_OK) abort(); /* only allocation can fail */
  int V = rt_tok_vocab(t);
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= V) abort();
  RbBuf out = {0};
  if (rt_tok_decode(t, ids, n, &out) != RB_OK || out.len > size) abort();
  rb_buf_free(&out);
  rb_free(ids);
  return 0;
}
