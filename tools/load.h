/* load.h: what run, ppl and bench share: a model's IR compiled in process
 * (parse, verify, fuse, kernels through the cache, plan), opened on the GPU
 * or on the host target with its weights; and the tokenizer. */
#ifndef RABIT_TOOLS_LOAD_H
#define RABIT_TOOLS_LOAD_H

#include "runtime/runtime.h"
#include "runtime/text/text.h"

/* Where a model runs: --target cuda|host, or the GPU when one is present, else the host. */
typedef enum { LOAD_AUTO, LOAD_CUDA, LOAD_HOST } LoadTarget;

typedef struct {
  const char *ir;       /* model.ir */
  const char *weights;  /* safetensors; NULL with random */
  int fp16;             /* every linear dense fp16 (cuBLAS): the baseline */
  int random;           /* random weights of the model's shapes */
  int max_ctx;          /* KV cache length; 0 = 2048 */
  int max_tokens;       /* prefill chunk; 0 = 512 */
  int paths;            /* --paths override; 0 = the file's */
  const char *tool;     /* "rabit run", for messages */
  LoadTarget target;    /* --target; LOAD_AUTO picks */
  int threads;          /* the host target's threads; 0 = the online CPUs */
} LoadOptions;

typedef struct {
  RtPlan *plan;
  RtGpu *gpu;           /* NULL on the host target */
  RtProgram *program;
  RtModel *model;
  double ms_compile;    /* parse + kernels (cache or NVRTC) */
  double ms_weights;    /* binding weights */
  int kernels, hits;
  const char *where;    /* "on the GPU", "on the host", for messages */
} Loaded;

/* --target's parser (ARGS_OPT_CUSTOM): cuda or host into a LoadTarget. */
const char *load_parse_target(const char *v, void *dest);
#define LOAD_TARGET_HELP "cuda or host (default: the GPU when one is present, else the host through LLVM)"

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
