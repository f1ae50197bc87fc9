/* rabitc: the compiler driver. Parses and verifies a model's IR, fuses it,
 * prints the layers, then compiles every distinct kernel through the on-disk
 * cache (in parallel) and optionally writes the plan or the CUDA sources.
 * With --train it builds the training graph (the grad pass) instead.
 * Exit codes: 0 ok, 1 user error (bad input, bad usage), 2 internal error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "autotune/autotune.h"
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "runtime/runtime.h"
#include "runtime/jit/jit.h"
#include "runtime/cuda/gpu.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/paths.h"

enum { DUMP_NONE, DUMP_PARSE, DUMP_VERIFY, DUMP_FUSION, DUMP_GRAD };
enum { EMIT_NONE, EMIT_PLAN, EMIT_CUDA, EMIT_LLVM };
enum { TARGET_CUDA, TARGET_HOST };

typedef struct {
  FeOptions fe;
  int dump;
  int emit;
  int no_compile; /* --no-compile: the layer table only */
  int list;       /* --list-kernels: the kernel table, nothing compiled */
  int jobs;
  int max_ctx;
  const char *arch;
  int target;         /* --target: TARGET_CUDA (default) or TARGET_HOST */
  const char *device; /* --device: the GPU whose tuned and shipped schedules apply */
  const char *out;
  int train;    /* --train: the training graph (grad pass), nothing compiled */
  float gamma;  /* --gamma (ARGS_FLOAT stores a float) */
  int gamma_set;
} Options;

/* The --help text around the options. */
static const char help_head[] =
    "usage: rabitc [options] FILE.ir...\n"
    "       rabitc cache stats|clear\n"
    "       rabitc tune --export FILE | --import FILE | MODEL.ir\n"
    "\n"
    "Compile RaBiT models: parse and verify the IR, fuse, print the layers, and compile\n"
    "every distinct kernel with NVRTC into the on-disk cache. FILE may be '-' for stdin.\n"
    "\n"
    "options:\n";
static const char help_tail[] =
    "\n"
    "The kernel cache lives in $RABIT_CACHE_DIR, else $XDG_CACHE_HOME/rabit, else\n"
    "~/.cache/rabit. 'rabitc cache stats' shows it; 'rabitc cache clear' empties it.\n"
    "The tuning database beside it is shared with 'rabitc tune --export FILE' and\n"
    "'rabitc tune --import FILE'. Each kernel takes the schedule tuned for this GPU (the\n"
    "database's record for its exact device, arch and compiler), else the one shipped\n"
    "in autotune/shipped/ ($RABIT_SHIPPED_DIR overrides the folder), else the default;\n"
    "the kernel table says which, and the plan records it. Without a GPU, --device names\n"
    "the GPU to take them for.\n"
    "$RABIT_NVRTC_OPTIONS adds NVRTC options (space-separated) to every kernel, and to\n"
    "its cache key: -lineinfo for Nsight Compute's source view (kernels are built\n"
    "without line tables by default).\n"
    "$RABIT_PREFILL=mma gives every quantized linear's prefill bucket (batches above 16)\n"
    "the staged mma kernel instead of the dequant strategy (the default: the bits\n"
    "expanded to fp16, then cuBLAS). $RABIT_DECODE=lop3 gives the buckets up to 16 the\n"
    "lop3 decode (each sign into an fp16 mantissa bit by one LOP3). The batch-1 bucket runs\n"
    "the bmma strategy (the bits as b1 tensor-core operands, after a pre-pass that writes the\n"
    "activations' int16 bit planes and folds in the rmsnorm before the linear);\n"
    "$RABIT_BMMA=0 leaves it out, so the xor kernel serves batch 1. $RABIT_FUSE_NORM=1\n"
    "folds the rmsnorm into the other decode buckets' kernels too (off by default: their\n"
    "fp16 products lost accuracy on real trained weights; tests/bench/RESULTS.md);\n"
    "$RABIT_FUSE_NORM=0 folds it nowhere.\n"
    "\n"
    "With --train, rabitc builds the training graph (the unfused forward, then the KL\n"
    "loss against a teacher's logits, the hidden-state MSE when --gamma > 0, and the\n"
    "backward) and compiles no kernels: 'rabitc --train --dump-ir=after-grad FILE.ir'.\n"
    "\n"
    "exit status: 0 ok, 1 bad input or usage, 2 internal error\n";

/* The custom options: --arch, --emit and --dump-ir (args.h). */
static const char *parse_arch(const char *v, void *dest) {
  if (strncmp(v, "sm_", 3) != 0 || strlen(v) < 5 || strlen(v) > 8) return "a target such as sm_90";
  *(const char **)dest = v;
  return NULL;
}

static const char *parse_device(const char *v, void *dest) {
  if (!*v || strlen(v) >= sizeof ((AtDevice *)0)->device) return "a GPU's name such as 'NVIDIA H200' (at most 127 bytes)";
  *(const char **)dest = v;
  return NULL;
}

static const char *parse_emit(const char *v, void *dest) {
  static const char *const names[] = {[EMIT_PLAN] = "plan", [EMIT_CUDA] = "cuda", [EMIT_LLVM] = "llvm"};
  int k = args_pick(v, names, ARGS_COUNT(names));
  if (k < 0) return "plan, cuda or llvm";
  *(int *)dest = k;
  return NULL;
}

static const char *parse_target(const char *v, void *dest) {
  static const char *const names[] = {[TARGET_CUDA] = "cuda", [TARGET_HOST] = "host"};
  int k = args_pick(v, names, ARGS_COUNT(names));
  if (k < 0) return "cuda or host";
  *(int *)dest = k;
  return NULL;
}

static const char *parse_dump(const char *v, void *dest) {
  static const char *const names[] = {[DUMP_PARSE] = "after-parse", [DUMP_VERIFY] = "after-verify",
                                      [DUMP_FUSION] = "after-fusion", [DUMP_GRAD] = "after-grad"};
  int k = args_pick(v, names, ARGS_COUNT(names));
  if (k < 0) return "after-parse, after-verify, after-fusion or after-grad";
  *(int *)dest = k;
  return NULL;
}

static void dump(const IrGraph *g) {
  RbBuf b = {0};
  ir_graph_print(g, &b);
  if (b.data) fputs(b.data, stdout);
  rb_buf_free(&b);
}

static void lines_str(const CgKernelUse *u, const char *path, char *s, size_t n) {
  size_t used = (size_t)snprintf(s, n, "%s:", path);
  for (int j = 0; j < u->nlines && used < n; j++)
    used += (size_t)snprintf(s + used, n - used, "%s%d", j ? "," : "", u->lines[j]);
}

/* The .cu (or, for the host target, .ll) file people read: a header naming
 * the spec, the IR lines and the key, then the canonical source that was
 * hashed and compiled. */
static int write_cuda_to(FILE *f, const char *path, const CgKernelUse *u, const RtBuilt *b, const char *ext) {
  if (!f) return -1;
  RbBuf spec = {0};
  cg_kernel_describe(&u->kernel, &spec);
  char hex[33], lines[256];
  rt_key_hex(b->key, hex);
  lines_str(u, path, lines, sizeof lines);
  if (strcmp(ext, ".ll") == 0)
    fprintf(f,
            "; Generated by rabitc %s. Do not edit: the kernel is rebuilt from its spec.\n"
            "; spec:   %s\n"
            "; serves: %s (%d op%s)\n"
            "; key:    %s (XXH3-128 of the source below this header, the O3 pipeline,\n"
            ";         the compiler identity: LLVM, triple, CPU, features; the rabitc version)\n",
            RABIT_VERSION, spec.data ? spec.data : "?", lines, u->uses, u->uses == 1 ? "" : "s", hex);
  else
  fprintf(f,
          "/* Generated by rabitc %s. Do not edit: the kernel is rebuilt from its spec.\n"
          " * spec:   %s\n"
          " * serves: %s (%d op%s)\n"
          " * key:    %s (XXH3-128 of the source below this header, the NVRTC options,\n"
          " *         the target, the compiler identity and the rabitc version)\n"
          " */\n",
          RABIT_VERSION, spec.data ? spec.data : "?", lines, u->uses, u->uses == 1 ? "" : "s", hex);
  fputs(b->source.data ? b->source.data : "", f);
  rb_buf_free(&spec);
  int bad = ferror(f);
  return fclose(f) || bad ? -1 : 0;
}

static int write_cuda(const char *dir, const char *path, const CgKernelUse *u, const RtBuilt *b,
                      char *file, size_t n, const char *ext) {
  snprintf(file, n, "%s/%s%s", dir, b->entry, ext);
  return write_cuda_to(fopen(file, "w"), path, u, b, ext);
}

/* A failed kernel's source, for the user to read: in this process's private
 * directory (rt_dump_create), never at a guessable path in /tmp. */
static int dump_cuda(const char *path, const CgKernelUse *u, const RtBuilt *b, char *file, size_t n,
                     RbBuf *why, const char *ext) {
  char name[CG_ENTRY_MAX + 8];
  snprintf(name, sizeof name, "%s%s", b->entry, ext);
  int fd = rt_dump_create(name, file, n, why);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (fd >= 0 && !f) close(fd);
  if (write_cuda_to(f, path, u, b, ext) == 0) return 0;
  if (!why->len) rb_buf_printf(why, "cannot write '%s': %s\n", file, strerror(errno));
  return -1;
}

/* The target: its arch (--arch, else the GPU's, else sm_90) and the device
 * whose tuned and shipped schedules apply (--device, else the GPU's name,
 * else none: device[0] is 0). */
static const char *detect_target(const Options *o, char *buf, size_t n, char *device, size_t dn) {
  snprintf(device, dn, "%s", o->device ? o->device : "");
  if (o->arch && o->device) return o->arch;
  RbBuf err = {0};
  RtGpu *gpu = NULL;
  const char *arch = o->arch ? o->arch : "sm_90";
  if (rt_gpu_open(&gpu, 0, &err) == RB_OK) {
    if (!o->arch) {
      snprintf(buf, n, "%s", rt_gpu_arch(gpu));
      arch = buf;
    }
    if (!o->device) snprintf(device, dn, "%s", rt_gpu_name(gpu));
    rt_gpu_close(gpu);
  } else if (!o->arch) {
    /* The loader's reason, without the "needs a GPU" preamble or a newline. */
    const char *why = err.data ? strstr(err.data, "driver: ") : NULL;
    why = why ? why + 8 : err.data ? err.data : "?";
    fprintf(stderr, "rabitc: no GPU here (%.*s); compiling for sm_90 (choose with --arch)\n",
            (int)strcspn(why, "\n"), why);
  }
  rb_buf_free(&err);
  return arch;
}

/* One line per kernel, then the failures: the log, the .cu to read, the IR it serves. */
static void report_kernels(const RtCompiled *c, const char *arch, const char *ext) {
  const CgKernelSet *ks = &c->kernels;
  int from[3] = {0};
  printf("\n%-58s %-16s %-8s %5s %9s\n", "kernel", "IR lines", "schedule", "cache", "ms");
  for (int i = 0; i < ks->n; i++) {
    RbBuf d = {0};
    char lines[256];
    cg_kernel_describe(&ks->k[i].kernel, &d);
    lines_str(&ks->k[i], "", lines, sizeof lines);
    const RtBuilt *b = &c->built[i];
    if ((unsigned)ks->k[i].from < 3) from[ks->k[i].from]++;
    printf("%-58s %-16s %-8s %5s %9.1f\n", d.data ? d.data : "?", lines + 1, cg_schedule_source_name(ks->k[i].from),
           b->rc != RB_OK ? "FAIL" : b->hit ? "hit" : "miss", b->ms);
    rb_buf_free(&d);
  }
  RtCacheStats st = {0};
  if (!c->cache || rt_cache_stats(c->cache, &st) != RB_OK) st.dir = NULL;
  printf("%d kernels for %s: %d compiled, %d from the cache, %d failed, %.3f s wall; schedules %d tuned, "
         "%d shipped, %d default; cache %s\n", ks->n, arch, ks->n - c->hits - c->failed, c->hits, c->failed,
         c->ms_build / 1e3, from[CG_FROM_TUNED], from[CG_FROM_SHIPPED], from[CG_FROM_DEFAULT],
         st.dir ? st.dir : "in memory only");
  for (int i = 0; i < ks->n; i++) {
    const RtBuilt *b = &c->built[i];
    if (b->rc == RB_OK) {
      if (b->log.data) fprintf(stderr, "rabitc: %s", b->log.data); /* cache warnings */
      continue;
    }
    char file[4096], lines[256];
    lines_str(&ks->k[i], c->shown, lines, sizeof lines);
    RbBuf d = {0}, why = {0};
    cg_kernel_describe(&ks->k[i].kernel, &d);
    int dumped = b->source.len && dump_cuda(c->shown, &ks->k[i], b, file, sizeof file, &why, ext) == 0;
    const char *log = b->log.data ? b->log.data : "";
    fprintf(stderr, "%s: error: kernel '%s' cannot be built%s%.*s\n%s%s", lines, d.data ? d.data : b->entry,
            dumped ? "; its source is in " : why.len ? "; its source could not be saved: " : "",
            dumped ? (int)strlen(file) : why.len ? (int)strcspn(why.data, "\n") : 0,
            dumped ? file : why.len ? why.data : "", log, *log && log[strlen(log) - 1] != '\n' ? "\n" : "");
    rb_buf_free(&d);
    rb_buf_free(&why);
  }
}

/* --emit=cuda (or llvm): one .cu (.ll) file per kernel in the directory o->out. */
static int write_sources(const RtCompiled *c, const Options *o) {
  if (rb_mkdir_p(o->out, 0755) != 0) {
    fprintf(stderr, "rabitc: cannot create directory '%s': %s\n", o->out, strerror(errno));
    return RB_EUSER;
  }
  for (int i = 0; i < c->kernels.n; i++) {
    char file[4096];
    if (write_cuda(o->out, c->shown, &c->kernels.k[i], &c->built[i], file, sizeof file,
                   o->target == TARGET_HOST ? ".ll" : ".cu") != 0) {
      fprintf(stderr, "rabitc: cannot write '%s': %s\n", file, strerror(errno));
      return RB_EUSER;
    }
  }
  printf("wrote %d kernels to %s/\n", c->kernels.n, o->out);
  return RB_OK;
}

/* The kernel list alone: what the fusion pass and kernel selection produce. */
static void list_kernels(const CgKernelSet *ks) {
  printf("\n%-58s %-16s %5s\n", "kernel", "IR lines", "uses");
  for (int i = 0; i < ks->n; i++) {
    RbBuf d = {0};
    char lines[256];
    cg_kernel_describe(&ks->k[i].kernel, &d);
    lines_str(&ks->k[i], "", lines, sizeof lines);
    printf("%-58s %-16s %5d\n", d.data ? d.data : "?", lines + 1, ks->k[i].uses);
    rb_buf_free(&d);
  }
  printf("%d kernels\n", ks->n);
}

static const RtStage dump_stage[] = {[DUMP_PARSE] = RT_STAGE_PARSE, [DUMP_VERIFY] = RT_STAGE_VERIFY,
                                     [DUMP_FUSION] = RT_STAGE_FUSE, [DUMP_GRAD] = RT_STAGE_GRAD};

/* --train: the training graph, dumped or summarized; its kernels are not
 * compiled here. Returns an exit code. */
static int train_file(const char *path, const Options *o) {
  RtCompileOptions co = {.path = path, .fe = o->fe, .train = 1, .gamma = o->gamma,
                         .stop = o->dump != DUMP_NONE ? dump_stage[o->dump] : RT_STAGE_GRAD};
  RtCompiled c;
  RbBuf err = {0};
  int rc = rt_compile(&co, &c, &err);
  if (rc == RB_OK && o->dump != DUMP_NONE) dump(c.graph);
  else if (rc == RB_OK) {
    int loss = 0, bwd = 0, fwd = 0;
    for (int i = 0; i < c.graph->nnodes; i++) {
      IrOp op = c.graph->nodes[i].op;
      if (c.graph->nodes[i].dead) continue;
      if (op == IR_KL_LOSS || op == IR_HIDDEN_MSE) loss++;
      else if (loss) bwd++;
      else fwd++;
    }
    printf("%s: model '%s', graph '%s': %d forward ops, %d loss ops, %d backward ops\n", c.shown,
           c.graph->model ? c.graph->model : "?", c.graph->name, fwd, loss, bwd);
    printf("(the training kernels are not compiled by rabitc; --dump-ir=after-grad prints the graph)\n");
  }
  if (c.diag.data) fputs(c.diag.data, stderr);
  args_report("rabitc", err.data);
  if (rc == RB_EINTERNAL) fprintf(stderr, "rabitc: internal error while compiling '%s'\n", c.shown);
  rb_buf_free(&err);
  rt_compiled_free(&c);
  return rc;
}

/* The tuned and shipped schedules for device on arch into s, said when a
 * database is broken (and then ignored); no device, none (s stays empty). */
static int open_schedules(const char *device, const char *arch, AtSchedules *s, RbBuf *err) {
  AtDevice dev;
  if (!*device) return RB_OK;
  int rc = at_device_init(&dev, device, arch, err);
  RbBuf warn = {0};
  if (rc == RB_OK) rc = at_schedules_open(s, &dev, NULL, NULL, &warn);
  args_report("rabitc", warn.data);
  if (warn.oom) rc = RB_EINTERNAL;
  rb_buf_free(&warn);
  return rc;
}

/* Compile one file through the pipeline, as far as the options ask; returns an exit code. */
static int compile_file(const char *path, const Options *o) {
  RtCompileOptions co = {.path = path, .fe = o->fe, .max_ctx = o->max_ctx, .jobs = o->jobs,
                         .target = o->target == TARGET_HOST ? &cg_target_host : &cg_target_cuda};
  char archbuf[16], device[sizeof ((AtDevice *)0)->device];
  AtSchedules sch = {0};
  int kernels = o->list || !o->no_compile || o->out;
  co.stop = o->dump != DUMP_NONE ? dump_stage[o->dump] : o->list ? RT_STAGE_SELECT
            : kernels ? (o->out && o->emit == EMIT_PLAN ? RT_STAGE_PLAN : RT_STAGE_BUILD) : RT_STAGE_FUSE;
  /* The layer table comes before the (slow) build: the front half first, then
   * the back half continues from the fused graph. */
  RtCompileOptions front = co;
  if (front.stop > RT_STAGE_FUSE) front.stop = RT_STAGE_FUSE;
  RtCompiled c;
  RbBuf err = {0};
  int rc = rt_compile(&front, &c, &err);
  if (rc == RB_OK && o->dump != DUMP_NONE) {
    dump(c.graph);
  } else if (rc == RB_OK) {
    RbBuf t = {0};
    printf("%s: model '%s', graph '%s'\n", c.shown, c.graph->model ? c.graph->model : "?", c.graph->name);
    cg_graph_summary(c.graph, &t);
    if (t.data) fputs(t.data, stdout);
    rb_buf_free(&t);
    fflush(stdout);
    if (co.stop > RT_STAGE_FUSE) {
      if (co.stop >= RT_STAGE_BUILD && o->target == TARGET_HOST) {
        co.arch = "host"; /* the compiler's identity names the CPU; no tuned schedules yet */
      } else if (co.stop >= RT_STAGE_BUILD) {
        co.arch = detect_target(o, archbuf, sizeof archbuf, device, sizeof device);
        rc = open_schedules(device, co.arch, &sch, &err);
        if (sch.dev.device[0]) co.schedule = at_schedule_pick, co.schedule_ctx = &sch;
      }
      if (rc == RB_OK) rc = rt_compile_continue(&co, &c, &err);
      args_report("rabitc", c.warnings.data);
      if (o->list && c.reached >= RT_STAGE_SELECT) list_kernels(&c.kernels);
      else if (c.built) report_kernels(&c, co.arch, o->target == TARGET_HOST ? ".ll" : ".cu");
      if (c.failed) rb_buf_free(&err); /* each failure was reported above, with its log */
      if (rc == RB_OK && o->out && (o->emit == EMIT_CUDA || o->emit == EMIT_LLVM)) rc = write_sources(&c, o);
      else if (rc == RB_OK && o->out) {
        rc = rt_plan_write(o->out, c.plan, &err);
        if (rc == RB_OK) printf("wrote plan %s\n", o->out);
      }
    }
  }
  if (c.diag.data) fputs(c.diag.data, stderr);
  args_report("rabitc", err.data);
  if (rc == RB_EINTERNAL) fprintf(stderr, "rabitc: internal error while compiling '%s'\n", c.shown);
  rb_buf_free(&err);
  rt_compiled_free(&c);
  at_schedules_free(&sch);
  return rc;
}

/* rabitc cache stats|clear. What cannot be read or removed (a read-only
 * cache, a stray directory) is named and exits 1: the user can fix it. */
static int cache_command(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[2], "stats") && strcmp(argv[2], "clear"))) {
    fprintf(stderr, "usage: rabitc cache stats|clear\n");
    return 1;
  }
  RbBuf warn = {0};
  RtCache *c = NULL;
  if (rt_cache_open(&c, NULL, RT_CACHE_DEFAULT_MAX, &warn) != RB_OK) return 2;
  if (warn.data) fprintf(stderr, "rabitc: %s", warn.data);
  rb_buf_free(&warn);
  int rc = 0;
  RtCacheStats st;
  if (strcmp(argv[2], "clear") == 0) {
    RtCacheCleared done;
    RbBuf err = {0};
    rt_cache_stats(c, &st); /* for the directory's name */
    rc = rt_cache_clear(c, &done, &err);
    printf("removed %llu entries (%.1f MB) from %s\n", (unsigned long long)done.entries, done.bytes / 1e6,
           st.dir ? st.dir : "memory");
    for (const char *l = err.data; l && *l;) { /* one "rabitc: " per line */
      size_t n = strcspn(l, "\n");
      fprintf(stderr, "rabitc: %.*s\n", (int)n, l);
      l += n + (l[n] == '\n');
    }
    if (rc == RB_EUSER && done.failed)
      fprintf(stderr, "rabitc: %llu file%s in '%s' could not be removed\n", (unsigned long long)done.failed,
              done.failed == 1 ? "" : "s", st.dir ? st.dir : "?");
    rb_buf_free(&err);
  } else if ((rc = rt_cache_stats(c, &st)) == RB_OK) {
    printf("cache:   %s%s\nentries: %llu\nsize:    %.1f MB of %.1f MB\ncompiler: %s\n",
           st.dir ? st.dir : "(memory only)", st.readonly ? " (read-only)" : "", (unsigned long long)st.entries,
           st.bytes / 1e6, st.max_bytes / 1e6, rt_nvrtc_id());
  } else if (rc == RB_EUSER)
    fprintf(stderr, "rabitc: cannot read the kernel cache '%s': %s\n", st.dir ? st.dir : "?", strerror(errno));
  rt_cache_close(c);
  return rc;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "cache") == 0) return cache_command(argc, argv);
  if (argc > 1 && strcmp(argv[1], "tune") == 0) return rabitc_tune(argc - 1, argv + 1);
  Options o = {.dump = DUMP_NONE, .emit = EMIT_PLAN, .max_ctx = 2048, .gamma = -1};
  int version = 0;
  const ArgsOpt opts[] = {
      ARGS_OPT_INT(NULL, "--paths", &o.fe.paths, "K", 1, 4,
                   "residual binary paths for ops without their own quant\n"
                   "(overrides the file's 'quant default'; K in 1..4)"),
      ARGS_OPT_CUSTOM(NULL, "--arch", parse_arch, &o.arch, "sm_XY",
                      "target GPU architecture (default: the GPU's, else sm_90)"),
      ARGS_OPT_CUSTOM(NULL, "--target", parse_target, &o.target, "cuda|host",
                      "what the kernels run on: cuda (default), or host, this CPU\n"
                      "through LLVM 16 (O3, JIT in process; needs a build with LLVM)"),
      ARGS_OPT_CUSTOM(NULL, "--device", parse_device, &o.device, "NAME",
                      "take the tuned and shipped schedules recorded for the GPU\n"
                      "named NAME, e.g. 'NVIDIA H200', when compiling on a machine\n"
                      "without it (default: this machine's GPU, else none)"),
      ARGS_OPT_INT(NULL, "--max-ctx", &o.max_ctx, "N", 1, 1 << 20,
                   "KV-cache length the attention kernels serve (default 2048)"),
      ARGS_OPT_STRING("-o", NULL, &o.out, "PATH",
                      "write the plan to PATH (model.rplan), or with --emit=cuda|llvm\n"
                      "write one .cu file per kernel into the directory PATH"),
      ARGS_OPT_CUSTOM(NULL, "--emit", parse_emit, &o.emit, "=plan|cuda|llvm",
                      "what -o writes (default: plan); llvm: one .ll per kernel,\n"
                      "with --target host"),
      ARGS_OPT_FLAG(NULL, "--no-compile", &o.no_compile, "stop after the layer table"),
      ARGS_OPT_FLAG(NULL, "--list-kernels", &o.list,
                    "print the distinct kernels and the IR lines they serve; no compile"),
      ARGS_OPT_INT("-j", NULL, &o.jobs, "N", 1, 64, "compile N kernels at once (default: all cores)"),
      ARGS_OPT_CUSTOM(NULL, "--dump-ir", parse_dump, &o.dump, "=STAGE",
                      "print the graph as IR text after STAGE and stop:\n"
                      "after-parse, after-verify, after-fusion, or with --train after-grad"),
      ARGS_OPT_FLAG(NULL, "--train", &o.train,
                    "build the training graph (the unfused forward, the loss and the\n"
                    "backward) instead of compiling; see --dump-ir=after-grad"),
      ARGS_OPT_FLOAT(NULL, "--gamma", &o.gamma, "G", 0, 1e9, 0,
                     "with --train: weight of the hidden-state MSE in the loss\n"
                     "(default 0: the KL alone)"),
      ARGS_OPT_HELP("-h", "--help", "show this help"),
      ARGS_OPT_FLAG("-V", "--version", &version, "show the version"),
  };
  const char *files[256];
  const ArgsSpec spec = {"rabitc", help_head, help_tail, 23, opts, ARGS_COUNT(opts),
                         ARGS_COUNT(files), "at most 256 input files"};
  int nfiles, rc = args_parse(&spec, argc, argv, files, &nfiles);
  if (rc != ARGS_GO) return rc;
  if (version) {
    printf("rabitc %s\n", RABIT_VERSION);
    return 0;
  }
  if (!nfiles) return args_missing(&spec, "an input file (FILE.ir, or - for stdin)");
  if (o.out && nfiles > 1) {
    fprintf(stderr, "rabitc: -o takes one input file, got %d\n", nfiles);
    return 1;
  }
  if ((o.emit == EMIT_CUDA || o.emit == EMIT_LLVM) && !o.out) {
    fprintf(stderr, "rabitc: --emit=%s needs -o DIR\n", o.emit == EMIT_CUDA ? "cuda" : "llvm");
    return 1;
  }
  if (o.emit == EMIT_LLVM && o.target != TARGET_HOST) {
    fprintf(stderr, "rabitc: --emit=llvm is the host target's source: add --target host\n");
    return 1;
  }
  if (o.emit == EMIT_CUDA && o.target == TARGET_HOST) {
    fprintf(stderr, "rabitc: --emit=cuda is the CUDA target's source; the host target emits --emit=llvm\n");
    return 1;
  }
  if (o.target == TARGET_HOST) {
    RbBuf why = {0};
    int avail = cg_host_available(&why);
    if (avail != RB_OK) fprintf(stderr, "rabitc: %s\n", why.data ? why.data : "the host target is missing");
    rb_buf_free(&why);
    if (avail != RB_OK) return 1;
    if (o.arch || o.device || o.train) {
      fprintf(stderr, "rabitc: --target host does not go with %s\n", o.arch ? "--arch" : o.device ? "--device" : "--train");
      return 1;
    }
  }
  o.gamma_set = o.gamma >= 0; /* -1 until --gamma gives a value (which must be >= 0) */
  if (!o.gamma_set) o.gamma = 0;
  if (o.dump == DUMP_GRAD && !o.train) {
    fprintf(stderr, "rabitc: --dump-ir=after-grad needs --train\n");
    return 1;
  }
  if (o.gamma_set && !o.train) {
    fprintf(stderr, "rabitc: --gamma needs --train\n");
    return 1;
  }
  if (o.train && (o.dump == DUMP_FUSION || o.out || o.list || o.no_compile)) {
    fprintf(stderr, "rabitc: --train builds the training graph only; it takes --dump-ir=after-parse, "
                    "after-verify or after-grad, not %s\n",
            o.dump == DUMP_FUSION ? "--dump-ir=after-fusion" : o.out ? "-o" : o.list ? "--list-kernels" : "--no-compile");
    return 1;
  }
  if (o.device && (o.train || o.list || o.no_compile || o.dump != DUMP_NONE)) {
    fprintf(stderr, "rabitc: --device picks the schedules of compiled kernels; it does not go with %s\n",
            o.train ? "--train" : o.list ? "--list-kernels" : o.no_compile ? "--no-compile" : "--dump-ir");
    return 1;
  }
  /* The output before the work: a typo in -o must not cost a compile. */
  if (o.out && !o.train && o.dump == DUMP_NONE && !o.list &&
      (o.emit == EMIT_CUDA || o.emit == EMIT_LLVM ? paths_output_dir("rabitc", "-o", o.out) : paths_output_file("rabitc", "-o", o.out, "model.rplan")))
    return 1;
  int worst = 0;
  for (int i = 0; i < nfiles; i++) {
    rc = o.train ? train_file(files[i], &o) : compile_file(files[i], &o);
    if (rc > worst) worst = rc;
  }
  return worst;
}
