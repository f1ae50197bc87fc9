/* cmd_train.c: `rabit train MODEL.ir --weights W --data DIR --tokens N -o OUT`:
 * RaBiT QAT on the GPU (trainer/train.c), one progress line a step interval,
 * and at the end the packed model that rabit run and rabit ppl load. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tools/args.h"
#include "tools/commands.h"
#include "tools/paths.h"
#include "trainer/trainer.h"

static const char help_head[] =
    "usage: rabit train MODEL.ir --weights W --data DIR --tokens N -o OUT [options]\n"
    "\n"
    "RaBiT quantization-aware training on the GPU. The student is the IR's model with\n"
    "its quantized linears (quant = rabit(paths = k)) derived from one latent weight each;\n"
    "the teacher is the same model at full precision, frozen. The loss is KL(teacher ||\n"
    "student) per token, plus gamma times the layers' normalized hidden-state MSE.\n"
    "Muon trains the latent weights, AdamW the scales; warm-up, cosine decay, clipping.\n"
    "\n"
    "OUT is a directory: checkpoint.safetensors (every --ckpt-every steps, atomically;\n"
    "--resume continues from it), loss.svg, and model.safetensors, the packed export;\n"
    "with --eval-data also best.safetensors, the export at the best validation so far.\n"
    "\n";
static const char help_tail[] =
    "\n"
    "W is the full-precision safetensors file rabit import writes; DIR holds the token\n"
    "shards of rabit data prepare (train split). Held-out shards are refused.\n"
    "Exit status: 0 ok, 1 bad input, a missing GPU or a NaN, 2 internal error.\n";

static const char *parse_method(const char *v, void *dest) {
  static const char *const names[] = {"rabit", "standard", "ptq"};
  int i = args_pick(v, names, 3);
  if (i < 0) return "rabit, standard or ptq";
  *(const char **)dest = names[i];
  return NULL;
}

static const char *parse_init(const char *v, void *dest) {
  static const char *const names[] = {"greedy", "rabit"};
  int i = args_pick(v, names, 2);
  if (i < 0) return "greedy or rabit";
  *(const char **)dest = names[i];
  return NULL;
}

static void progress(void *ctx, const TrTrainProgress *p) {
  (void)ctx;
  switch (p->event) {
  case TR_EVENT_READY:
    printf("train: %s\n", p->text);
    break;
  case TR_EVENT_STEP:
    printf("step %d/%d  loss %.4f  kl %.4f  |g| %.3f  %.0f tok/s  ETA %.0f s\n", p->step, p->steps, p->loss, p->kl,
           p->grad_norm, p->tok_per_s, p->eta_s);
    break;
  case TR_EVENT_EVAL:
    printf("eval at step %d: validation ppl %.3f (%d windows)\n", p->step, p->val_ppl, p->windows);
    break;
  case TR_EVENT_CHECKPOINT:
    printf("checkpoint at step %d: %s\n", p->step, p->text);
    break;
  }
  fflush(stdout);
}

/* Contract (commands.h). */
int cmd_train(int argc, char **argv) {
  TrTrainOptions o = {.method = "rabit",
                      .step = {.batch = 8, .seq = 512, .ptq_rounds = 2},
                      .lr_w = 1e-3,
                      .lr_s = 3e-4,
                      .warmup = 20,
                      .ckpt_every = 200,
                      .eval_every = 0,
                      .log_every = 10,
                      /* RaBiT's own initialization: from it, QAT reached 1.22x FP's test perplexity on SmolLM2
                       * k = 2 at 5 M tokens (RESULTS.md, issue 9); a 1.5, b 1 were the best of the PTQ grid */
                      .init = "rabit",
                      .init_opt = {.a = 1.5, .b = 1.0, .rounds = 4},
                      .progress = progress};
  const char *pos[1] = {0};
  int paths = 0;
  float lr_w = (float)o.lr_w, lr_s = (float)o.lr_s, gamma = 0.0f, init_a = 1.5f, init_b = 1.0f;
  const ArgsOpt opts[] = {
      ARGS_OPT_STRING(NULL, "--weights", &o.step.weights, "W", "the full-precision model (rabit import)"),
      ARGS_OPT_STRING(NULL, "--data", &o.data, "DIR", "the training shards (rabit data prepare)"),
      ARGS_OPT_STRING(NULL, "--eval-data", &o.eval_data, "DIR",
                      "held-out shards: validation windows, and their texts are refused for training"),
      ARGS_OPT_U64(NULL, "--tokens", &o.tokens, "N", "the token budget (steps = N / (batch x seq))"),
      ARGS_OPT_U64(NULL, "--seed", &o.seed, "S", "the batch sampler's seed (default 0)"),
      ARGS_OPT_CUSTOM(NULL, "--method", parse_method, &o.method, "M",
                      "rabit (default: one latent W, the paths derived in sequence), standard\n"
                      "(one latent W_p a path, each receiving dL/dW_hat) or ptq (the initialization\n"
                      "alone, evaluated and exported)"),
      ARGS_OPT_CUSTOM(NULL, "--init", parse_init, &o.init, "I",
                      "rabit (default: calibrated on the FP model's activations and gradients,\n"
                      "preconditioned residual SVID) or greedy (rabit quantize's plain fit)"),
      ARGS_OPT_FLOAT(NULL, "--init-a", &init_a, "A", 0, 4, ARGS_CLOSED, "--init rabit: the exponent of s_out (default 1.5)"),
      ARGS_OPT_FLOAT(NULL, "--init-b", &init_b, "B", 0, 4, ARGS_CLOSED, "--init rabit: the exponent of s_in (default 1)"),
      ARGS_OPT_INT(NULL, "--init-rounds", &o.init_opt.rounds, "T", 0, 100, "--init rabit: Gauss-Seidel rounds (default 4)"),
      ARGS_OPT_U64(NULL, "--calib-tokens", &o.calib_tokens, "N", "--init rabit: calibration tokens (default 65536)"),
      ARGS_OPT_INT(NULL, "--paths", &paths, "k", 1, 4, "residual binary paths for the IR's default quant"),
      ARGS_OPT_FLOAT(NULL, "--lr-w", &lr_w, "X", 0, 1, ARGS_OPEN_LO, "Muon's learning rate (default 1e-3)"),
      ARGS_OPT_FLOAT(NULL, "--lr-s", &lr_s, "Y", 0, 1, ARGS_OPEN_LO, "AdamW's, for the scales (default 3e-4)"),
      ARGS_OPT_FLOAT(NULL, "--gamma", &gamma, "G", 0, 1e6, ARGS_CLOSED, "hidden-state MSE weight (default 0)"),
      ARGS_OPT_INT(NULL, "--batch", &o.step.batch, "B", 1, 1024, "sequences a step (default 8)"),
      ARGS_OPT_INT(NULL, "--seq", &o.step.seq, "S", 2, 8192, "tokens a sequence (default 512)"),
      ARGS_OPT_INT(NULL, "--warmup", &o.warmup, "N", 0, 1000000, "warm-up steps (default 20)"),
      ARGS_OPT_INT(NULL, "--ckpt-every", &o.ckpt_every, "N", 0, 100000000, "checkpoint interval in steps (default 200; 0: at the end)"),
      ARGS_OPT_INT(NULL, "--eval-every", &o.eval_every, "N", 0, 100000000, "validation interval in steps (default 0: at the end)"),
      ARGS_OPT_INT(NULL, "--eval-windows", &o.eval_windows, "N", 0, 100000, "validation windows of 1024 (default 0: all)"),
      ARGS_OPT_INT(NULL, "--log-every", &o.log_every, "N", 1, 100000000, "progress line interval in steps (default 10)"),
      ARGS_OPT_INT(NULL, "--max-steps", &o.max_steps, "N", 0, 100000000, "stop after N steps of this run (for tests; 0: none)"),
      ARGS_OPT_FLAG(NULL, "--resume", &o.resume, "continue from OUT/checkpoint.safetensors"),
      ARGS_OPT_STRING("-o", "--output", &o.out, "OUT", "the output directory"),
      ARGS_OPT_HELP("-h", "--help", "this text"),
  };
  const ArgsSpec spec = {"rabit train", help_head, help_tail, 18, opts, ARGS_COUNT(opts), 1, "one model IR"};
  int rc = args_parse(&spec, argc, argv, pos, NULL);
  if (rc != ARGS_GO) return rc;
  int ptq = !strcmp(o.method, "ptq");
  const char *missing = !pos[0] ? "a model IR (MODEL.ir)" : !o.step.weights ? "--weights W" : !o.data ? "--data DIR"
                        : !o.tokens && !ptq ? "--tokens N" : !o.out ? "-o OUT" : NULL;
  if (missing) return args_missing(&spec, missing);
  /* The files named before any work: a typo in -o must not cost a training run. */
  if (paths_input("rabit train", NULL, pos[0]) || paths_input("rabit train", "weights", o.step.weights) ||
      paths_output_dir("rabit train", "-o", o.out))
    return 1;
  o.step.ir = pos[0];
  o.step.fe.paths = paths;
  o.step.gamma = gamma;
  o.lr_w = lr_w, o.lr_s = lr_s;
  o.init_opt.a = init_a, o.init_opt.b = init_b;
  TrTrainResult r;
  RbBuf err = {0};
  rc = tr_train(&o, &r, &err);
  if (rc) args_report("rabit train", err.data ? err.data : "failed");
  else
    printf("trained %d steps, %llu tokens; %.0f tok/s overall, %.0f tok/s steady (after step %d); final loss %.4f; "
           "exported %s\n",
           r.steps, (unsigned long long)r.tokens, r.tok_per_s, r.tok_per_s_steady, TR_STEADY_AFTER, r.loss,
           r.export_path[0] ? r.export_path : "nothing (budget not spent)");
  if (!rc && r.best_path[0])
    printf("best validation ppl %.3f at step %d: %s\n", r.best_val_ppl, r.best_step, r.best_path);
  rb_buf_free(&err);
  return rc == RB_EINTERNAL ? 2 : rc ? 1 : 0;
}
