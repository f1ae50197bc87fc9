/* load.h: what run, ppl and bench share: a model's IR compiled in process
 * (parse, verify, fuse, kernels through the cache, plan), opened on the GPU
 * with its weights; and the tokenizer. */
#ifndef RABIT_TOOLS_LOAD_H
#define RABIT_TOOLS_LOAD_H

#include "runtime/runtime.h"
#include "runtime/text/text.h"

typedef struct {
  const char *ir;       /* model.ir */
  const char *weights;  /* safetensors; NULL with random */
  int fp16;             /* every linear dense fp16 (cuBLAS): the baseline */
  int random;           /* random weights of the model's shapes */
  int max_ctx;          /* KV cache length; 0 = 2048 */
  int max_tokens;       /* prefill chunk; 0 = 512 */
  int paths;            /* --paths override; 0 = the file's */
  const char *tool;     /* "rabit run", for messages */
} LoadOptions;

typedef struct {
  RtPlan *plan;
  RtGpu *gpu;
  RtProgram *program;
  RtModel *model;
  double ms_compile;    /* parse + kernels (cache or NVRTC) */
  double ms_weights;    /* binding weights */
  int kernels, hits;
} Loaded;

/* The model IR and the weights can be read: 0, else 1 after the error line
 * that names the file. load_model checks them too; a command calls this
 * first when it reads other files (the tokenizer) before the model. */
int load_check(const LoadOptions *o);
/* Returns an exit status (0 ok) after printing any error. */
int load_model(const LoadOptions *o, Loaded *out);
void load_free(Loaded *l);

/* The tokenizer at path (a .gguf, or a tokenizer.txt vocabulary); with no
 * path, the tokenizer.txt beside the weights. NULL after an error message. */
RtTokenizer *load_tokenizer(const char *path, const char *weights, const char *tool);

#endif
