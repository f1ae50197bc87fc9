/* train_weights.h: the trainer's GPU tests share a reference model (tests/ref/ref_train.h)
 * written as the teacher's F32 safetensors with Hugging Face names, and the map from a
 * trainable weight's name back to the reference's linear. */
#ifndef RABIT_TEST_TRAIN_WEIGHTS_H
#define RABIT_TEST_TRAIN_WEIGHTS_H

#include <stdio.h>
#include <string.h>

#include "runtime/formats/formats.h"
#include "tests/ref/ref_train.h"

static const char *const lin_names[REF_NLIN] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                "self_attn.o_proj", "mlp.gate_proj",   "mlp.up_proj",
                                                "mlp.down_proj"};

/* The teacher's weights as an F32 safetensors file with Hugging Face names. */
static inline int write_weights(const RefTrainModel *m, const char *path) {
  const RefTrainDims *d = &m->d;
  RtStWriter *w;
  if (rt_st_writer_new(&w)) return -1;
  char name[160];
  int64_t se[2] = {d->V, d->D}, sd[1] = {d->D};
  rt_st_writer_add(w, "model.embed_tokens.weight", RT_F32, 2, se, m->embed);
  rt_st_writer_add(w, "model.norm.weight", RT_F32, 1, sd, m->final_norm);
  for (int l = 0; l < d->L; l++) {
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    rt_st_writer_add(w, name, RT_F32, 1, sd, m->norm1[l]);
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    rt_st_writer_add(w, name, RT_F32, 1, sd, m->norm2[l]);
    for (int j = 0; j < REF_NLIN; j++) {
      const RefTrainLinear *q = &m->lin[l][j];
      int64_t s2[2] = {q->N, q->K};
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, lin_names[j]);
      rt_st_writer_add(w, name, RT_F32, 2, s2, q->dense);
    }
  }
  RbBuf err = {0};
  int rc = rt_st_writer_finish(w, path, &err);
  if (rc) printf("writing %s: %s\n", path, err.data ? err.data : "?");
  rb_buf_free(&err);
  return rc;
}

/* The reference linear that the step's weight i is ("model.layers.{l}.{name}"). */
static inline RefTrainLinear *ref_linear(RefTrainModel *m, const char *name, int *l_out, int *j_out) {
  int l;
  char rest[128];
  if (sscanf(name, "model.layers.%d.%127s", &l, rest) != 2 || l < 0 || l >= m->d.L) return NULL;
  for (int j = 0; j < REF_NLIN; j++)
    if (!strcmp(rest, lin_names[j])) {
      if (l_out) *l_out = l;
      if (j_out) *j_out = j;
      return &m->lin[l][j];
    }
  return NULL;
}

#endif
