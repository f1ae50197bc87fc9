/* llvm.c: the host target's compiler and loader, through LLVM 16's C API.
 * compile: the kernel's .ll text -> parsed, verified, optimized at O3 for this
 * CPU (LLVMRunPasses "default<O3>" with the host target machine) -> an ELF
 * object in memory (LLVMTargetMachineEmitToMemoryBuffer): what the cache
 * keeps. The compiler's identity, in every key, is LLVM's version with the
 * target triple, CPU name and features, so an object is never loaded on a
 * CPU it was not made for. Load: objects into one ORC LLJIT per RtHostJit
 * (LLVMOrcLLJITAddObjectFile), checked first, rebuilt when LLVM refuses them. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/IRReader.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Object.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "runtime/jit/jit.h"

/* ---- the host: triple, CPU, features, once ---- */

static char host_id[4096];
static char *host_triple, *host_cpu, *host_features;
static int host_ok;

static void host_init(void) {
  host_ok = !LLVMInitializeNativeTarget() && !LLVMInitializeNativeAsmPrinter();
  host_triple = LLVMGetDefaultTargetTriple();
  host_cpu = LLVMGetHostCPUName();
  host_features = LLVMGetHostCPUFeatures();
  unsigned ma = 0, mi = 0, pa = 0;
  LLVMGetVersion(&ma, &mi, &pa);
  snprintf(host_id, sizeof host_id, "llvm %u.%u.%u triple %s cpu %s features %s", ma, mi, pa, host_triple,
           host_cpu, host_features);
}

static void host_once(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, host_init);
}

const char *rt_llvm_id(void) {
  host_once();
  return host_id;
}

const char *rt_llvm_host_cpu(void) {
  host_once();
  return host_cpu;
}

/* The error's message appended to log, and the error consumed. */
static void put_error(RbBuf *log, const char *what, LLVMErrorRef e) {
  char *m = LLVMGetErrorMessage(e);
  rb_buf_printf(log, "%s: %s\n", what, m ? m : "?");
  LLVMDisposeErrorMessage(m);
}

static LLVMTargetMachineRef host_machine(RbBuf *log) {
  LLVMTargetRef t;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple(host_triple, &t, &msg)) {
    rb_buf_printf(log, "llvm: no target for %s: %s\n", host_triple, msg ? msg : "?");
    LLVMDisposeMessage(msg);
    return NULL;
  }
  /* PIC, small code model: what ORC links anywhere in the address space */
  return LLVMCreateTargetMachine(t, host_triple, host_cpu, host_features, LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                 LLVMCodeModelSmall);
}

/* The .ll text of source -> object bytes (rb_malloc'ed). RB_EUSER with LLVM's
 * message in log when the text does not parse or verify. */
static int llvm_compile(const char *source, const char *name, const char *arch, const char *const *opts, int nopts,
                        void **bin, size_t *len, RbBuf *log) {
  (void)arch, (void)opts, (void)nopts;
  *bin = NULL, *len = 0;
  host_once();
  if (!host_ok) {
    rb_buf_printf(log, "llvm: this LLVM has no native target for %s\n", host_triple);
    return RB_EUSER;
  }
  int rc = RB_EUSER;
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMMemoryBufferRef mb = LLVMCreateMemoryBufferWithMemoryRangeCopy(source, strlen(source), name);
  LLVMModuleRef mod = NULL;
  LLVMTargetMachineRef tm = NULL;
  LLVMMemoryBufferRef obj = NULL;
  char *msg = NULL;
  if (LLVMParseIRInContext(ctx, mb, &mod, &msg)) { /* takes mb either way */
    rb_buf_printf(log, "llvm: %s does not parse: %s\n", name, msg ? msg : "?");
    goto done;
  }
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
    rb_buf_printf(log, "llvm: %s does not verify: %s\n", name, msg ? msg : "?");
    goto done;
  }
  LLVMDisposeMessage(msg); /* the verifier allocates one (empty) even on success */
  msg = NULL;
  if (!(tm = host_machine(log))) goto done;
  LLVMSetTarget(mod, host_triple);
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(mod, dl);
  LLVMDisposeTargetData(dl);
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
  LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", tm, po);
  LLVMDisposePassBuilderOptions(po);
  if (e) {
    put_error(log, "llvm: O3", e);
    rc = RB_EINTERNAL;
    goto done;
  }
  if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &msg, &obj)) {
    rb_buf_printf(log, "llvm: cannot emit %s: %s\n", name, msg ? msg : "?");
    rc = RB_EINTERNAL;
    goto done;
  }
  *len = LLVMGetBufferSize(obj);
  if (!(*bin = rb_malloc(*len))) {
    rc = RB_EINTERNAL;
    goto done;
  }
  memcpy(*bin, LLVMGetBufferStart(obj), *len);
  rc = RB_OK;
done:
  if (msg) LLVMDisposeMessage(msg);
  if (obj) LLVMDisposeMemoryBuffer(obj);
  if (tm) LLVMDisposeTargetMachine(tm);
  if (mod) LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  return rc;
}

static const char *const llvm_opts[] = {"default<O3>"};
const RtCompiler rt_compiler_llvm = {"llvm", rt_llvm_id, llvm_opts, 1, llvm_compile};

/* ---- the JIT ---- */

/* An entry already loaded: a kernel's name says what it is (its hash covers
 * the whole description), so a second load of that name is the same code. */
typedef struct {
  char name[CG_ENTRY_MAX];
  CgHostEntry fn;
} Loaded;

struct RtHostJit {
  LLVMOrcLLJITRef jit;
  int warned; /* a refused object has been said once */
  Loaded *loaded;
  int nloaded, cap;
};

static CgHostEntry loaded_find(const RtHostJit *j, const char *name) {
  for (int i = 0; i < j->nloaded; i++)
    if (strcmp(j->loaded[i].name, name) == 0) return j->loaded[i].fn;
  return NULL;
}

static int loaded_add(RtHostJit *j, const char *name, CgHostEntry fn) {
  if (j->nloaded == j->cap) {
    int cap = j->cap ? 2 * j->cap : 64;
    Loaded *l = rb_realloc(j->loaded, (size_t)cap * sizeof *l);
    if (!l) return RB_EINTERNAL;
    j->loaded = l, j->cap = cap;
  }
  snprintf(j->loaded[j->nloaded].name, CG_ENTRY_MAX, "%s", name);
  j->loaded[j->nloaded++].fn = fn;
  return RB_OK;
}

int rt_host_jit_open(RtHostJit **out, RbBuf *err) {
  *out = NULL;
  host_once();
  if (!host_ok) {
    rb_buf_printf(err, "llvm: this LLVM has no native target for %s\n", host_triple);
    return RB_EUSER;
  }
  RtHostJit *j = rb_calloc(1, sizeof *j);
  if (!j) return RB_EINTERNAL;
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&j->jit, LLVMOrcCreateLLJITBuilder());
  if (e) {
    put_error(err, "llvm: cannot create the JIT", e);
    rb_free(j);
    return RB_EINTERNAL;
  }
  /* The objects call libm (expf, logf, cosf...) and may call the fp16
   * helpers: resolved in this process. */
  LLVMOrcDefinitionGeneratorRef gen;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL);
  if (e) {
    put_error(err, "llvm: cannot search this process's symbols", e);
    rt_host_jit_close(j);
    return RB_EINTERNAL;
  }
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j->jit), gen);
  *out = j;
  return RB_OK;
}

void rt_host_jit_close(RtHostJit *j) {
  if (!j) return;
  if (j->jit) {
    LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->jit);
    if (e) LLVMConsumeError(e);
  }
  rb_free(j->loaded);
  rb_free(j);
}

/* RB_OK when obj is an ELF object LLVM can read (a hit whose bytes passed the
 * cache's checksum can still be an object of another build gone wrong). */
static int object_check(const void *obj, size_t len, RbBuf *why) {
  LLVMMemoryBufferRef mb = LLVMCreateMemoryBufferWithMemoryRange(obj, len, "object", 0);
  char *msg = NULL;
  LLVMBinaryRef bin = LLVMCreateBinary(mb, NULL, &msg);
  int rc = RB_OK;
  if (!bin) {
    rb_buf_printf(why, "%s", msg ? msg : "not an object file");
    rc = RB_EUSER;
  } else {
    LLVMBinaryType t = LLVMBinaryGetType(bin);
    if (t != LLVMBinaryTypeELF64L && t != LLVMBinaryTypeELF64B && t != LLVMBinaryTypeELF32L &&
        t != LLVMBinaryTypeELF32B) {
      rb_buf_printf(why, "not an ELF object (binary type %d)", (int)t);
      rc = RB_EUSER;
    }
    LLVMDisposeBinary(bin);
  }
  if (msg) LLVMDisposeMessage(msg);
  LLVMDisposeMemoryBuffer(mb);
  return rc;
}

static int add_and_find(RtHostJit *j, const void *obj, size_t len, const char *entry, CgHostEntry *fn, RbBuf *why) {
  if (object_check(obj, len, why)) return RB_EUSER;
  LLVMMemoryBufferRef mb = LLVMCreateMemoryBufferWithMemoryRangeCopy(obj, len, entry);
  LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), mb);
  if (e) {
    put_error(why, "cannot add the object", e);
    return RB_EUSER;
  }
  LLVMOrcExecutorAddress addr = 0;
  if ((e = LLVMOrcLLJITLookup(j->jit, &addr, entry))) {
    put_error(why, "cannot find its entry", e);
    return RB_EUSER;
  }
  /* The JIT hands back an address; a function pointer is how it is called. */
  void *sym = (void *)(uintptr_t)addr;
  memcpy(fn, &sym, sizeof *fn);
  return RB_OK;
}

int rt_host_jit_load(RtHostJit *j, RtBuilt *b, RtCache *cache, CgHostEntry *fn, RbBuf *warn) {
  *fn = NULL;
  if (b->rc != RB_OK) return b->rc;
  if ((*fn = loaded_find(j, b->entry))) return RB_OK; /* a layer of the same shape, loaded before */
  RbBuf why = {0};
  int rc = add_and_find(j, b->cubin, b->len, b->entry, fn, &why);
  if (rc == RB_OK || !b->hit) {
    if (rc) rb_buf_printf(warn, "kernel %s: %s", b->entry, why.data ? why.data : "?");
    rb_buf_free(&why);
    return rc ? rc : loaded_add(j, b->entry, *fn);
  }
  /* A cached object LLVM refuses: said once per JIT, rebuilt from its source and stored over the bad one. */
  if (!j->warned++)
    rb_buf_printf(warn, "kernel cache: the object of %s is unusable (%s); rebuilding it\n", b->entry,
                  why.data ? why.data : "?");
  rb_buf_free(&why);
  void *obj = NULL;
  size_t len = 0;
  rc = llvm_compile(b->source.data, b->entry, "host", NULL, 0, &obj, &len, &b->log);
  if (rc) return rc;
  rb_free(b->cubin);
  b->cubin = obj, b->len = len, b->hit = 0;
  if (cache) (void)rt_cache_put(cache, b->key, obj, len, &b->log);
  rc = add_and_find(j, obj, len, b->entry, fn, &why);
  if (rc) rb_buf_printf(warn, "kernel %s: %s", b->entry, why.data ? why.data : "?");
  rb_buf_free(&why);
  return rc ? rc : loaded_add(j, b->entry, *fn);
}

/* ---- launch: a kernel's work items over the pool ---- */

typedef struct {
  CgHostEntry fn;
  void *const *argv;
} Launch;

static void launch_range(void *ctx, int64_t begin, int64_t end) {
  Launch *l = ctx;
  l->fn(l->argv, begin, end);
}

int64_t rt_host_launch(RbPool *pool, CgHostEntry fn, const CgGeometry *g, int n, void *const *args) {
  CgLaunch L = cg_geometry_launch(g, n);
  int64_t items = (int64_t)L.grid[0] * L.grid[1] * L.grid[2];
  if (items <= 0) return 0;
  /* Two chunks a thread: a chunk of the lut linear fills its tables first (~7 us), and
   * with the pool's spinning workers 4 a thread measured slower (SmolLM2 decode 7.6 ms,
   * against 6.6 at 2 and 1); 2 leaves some balance for a thread another process slows. */
  int64_t grain = items / (2 * (int64_t)rb_pool_threads(pool));
  Launch l = {fn, args};
  rb_pool_run(pool, items, grain < 1 ? 1 : grain, launch_range, &l);
  return items;
}
