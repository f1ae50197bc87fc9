/* build.c: a model's kernels compiled in parallel through the cache, for any
 * target. Each worker takes the next kernel, has the target emit its canonical
 * source, derives the key and fetches the binary or compiles it with the
 * target's compiler under the key's lock. Distinct kernels compile concurrently. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "runtime/jit/jit.h"

typedef struct {
  const CgKernel *kernels;
  int n;
  const RtBuildOptions *o;
  const RtCompiler *cc;
  RtBuilt *out;
  int next; /* the next kernel to take (atomic) */
} Work;

typedef struct {
  const RtCompiler *cc;
  const char *source, *entry, *arch;
  RbBuf *log;
} Compile;

/* The options in the key: the compiler's fixed ones, then $RABIT_NVRTC_OPTIONS
 * (extra options separated by spaces, for kernel experiments such as
 * -maxrregcount=64; they change the key, so they never mix with plain builds). */
#define MAX_EXTRA 16
static char extra_store[512];
static const char *extra[MAX_EXTRA];
static int nextra;

static void extra_init(void) {
  const char *env = getenv("RABIT_NVRTC_OPTIONS");
  snprintf(extra_store, sizeof extra_store, "%s", env ? env : "");
  for (char *save = NULL, *t = strtok_r(extra_store, " ", &save); t && nextra < MAX_EXTRA;
       t = strtok_r(NULL, " ", &save))
    extra[nextra++] = t;
}

static void extra_once(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, extra_init);
}

static void options_string(const RtCompiler *cc, char *out, size_t n) {
  extra_once();
  size_t used = 0;
  out[0] = 0;
  for (int i = 0; i < cc->noptions && used < n; i++)
    used += (size_t)snprintf(out + used, n - used, "%s%s", i ? " " : "", cc->options[i]);
  for (int i = 0; i < nextra && used < n; i++) used += (size_t)snprintf(out + used, n - used, " %s", extra[i]);
}

static const RtCompiler *const compilers[] = {
    &rt_compiler_nvrtc,
#ifdef RABIT_HAVE_LLVM
    &rt_compiler_llvm,
#endif
};

const RtCompiler *rt_compiler_find(const char *name) {
  for (size_t i = 0; i < sizeof compilers / sizeof compilers[0]; i++)
    if (strcmp(compilers[i]->name, name) == 0) return compilers[i];
  return NULL;
}

static int compile_cb(void *ctx, void **data, size_t *len) {
  Compile *c = ctx;
  return c->cc->compile(c->source, c->entry, c->arch, extra, nextra, data, len, c->log);
}

static void build_one(const CgKernel *k, const RtBuildOptions *o, const RtCompiler *cc, RtBuilt *b) {
  double t0 = rb_now_ms();
  if (o->target->arch_check && (b->rc = o->target->arch_check(k, o->arch, &b->log)) != RB_OK) return;
  b->rc = o->target->emit(k, &b->source, b->entry, &b->log);
  if (b->rc != RB_OK) return;
  if (b->source.oom) {
    b->rc = RB_EINTERNAL;
    return;
  }
  char options[1024];
  options_string(cc, options, sizeof options);
  RtKeyParts parts = {b->source.data, options, o->arch, cc->id(), RABIT_VERSION};
  b->key = rt_key_make(&parts);
  Compile c = {cc, b->source.data, b->entry, o->arch, &b->log};
  b->rc = rt_cache_fetch(o->cache, b->key, compile_cb, &c, &b->cubin, &b->len, &b->hit, &b->log);
  b->ms = rb_now_ms() - t0;
}

static void *worker(void *arg) {
  Work *w = arg;
  for (;;) {
    int i = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED);
    if (i >= w->n) return NULL;
    build_one(&w->kernels[i], w->o, w->cc, &w->out[i]);
  }
}

int rt_build_kernels(const CgKernel *kernels, int n, const RtBuildOptions *o, RtBuilt *out) {
  memset(out, 0, (size_t)n * sizeof *out);
  const RtCompiler *cc = rt_compiler_find(o->target->compiler);
  if (!cc) {
    for (int i = 0; i < n; i++) {
      out[i].rc = RB_EUSER;
      rb_buf_printf(&out[i].log, "target %s needs the %s compiler, which this build lacks\n", o->target->name,
                    o->target->compiler);
    }
    return RB_EUSER;
  }
  (void)cc->id(); /* computed once, before the threads race for it */
  extra_once();
  Work w = {kernels, n, o, cc, out, 0};
  int jobs = o->jobs > 0 ? o->jobs : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (jobs < 1) jobs = 1;
  if (jobs > n) jobs = n;
  pthread_t th[64];
  int started = 0;
  for (; started < jobs - 1 && started < 64; started++)
    if (pthread_create(&th[started], NULL, worker, &w) != 0) break;
  worker(&w); /* this thread works too, and alone if no thread could start */
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  int worst = RB_OK;
  for (int i = 0; i < n; i++)
    if (out[i].rc > worst) worst = out[i].rc;
  return worst;
}

int rt_build_kernel_set(const CgKernelSet *ks, const RtBuildOptions *o, RtBuilt **built) {
  CgKernel *kernels = rb_calloc((size_t)ks->n + 1, sizeof *kernels);
  *built = rb_calloc((size_t)ks->n + 1, sizeof **built);
  if (!kernels || !*built) {
    rb_free(kernels);
    rb_free(*built);
    *built = NULL;
    return RB_EINTERNAL;
  }
  for (int i = 0; i < ks->n; i++) kernels[i] = ks->k[i].kernel;
  int rc = rt_build_kernels(kernels, ks->n, o, *built);
  rb_free(kernels);
  return rc;
}
void rt_built_free(RtBuilt *b, int n) {
  for (int i = 0; i < n; i++) {
    rb_free(b[i].cubin);
    rb_buf_free(&b[i].source);
    rb_buf_free(&b[i].log);
  }
}

/* ---- the private directory for the sources of failed kernels ---- */

static char dump_dir[4096];
static int dump_errno; /* why it could not be made; 0 when it was */
static pthread_once_t dump_once = PTHREAD_ONCE_INIT;

/* mkdtemp makes the directory itself, mode 0700, and fails rather than reuse
 * a name that exists: nothing another user planted in /tmp is followed. */
static void dump_init(void) {
  const char *t = getenv("TMPDIR");
  if (!t || !*t) t = "/tmp";
  if ((size_t)snprintf(dump_dir, sizeof dump_dir, "%s/rabit-kernels-XXXXXX", t) >= sizeof dump_dir) {
    dump_errno = ENAMETOOLONG;
    return;
  }
  if (!mkdtemp(dump_dir)) {
    dump_errno = errno ? errno : EIO;
    strcpy(dump_dir + strlen(dump_dir) - 6, "XXXXXX"); /* glibc fills the template in even on failure */
  }
}

/* Contract in jit.h. */
int rt_dump_create(const char *name, char *path, size_t n, RbBuf *err) {
  pthread_once(&dump_once, dump_init);
  if (dump_errno) {
    if (err) rb_buf_printf(err, "cannot make a private directory '%s': %s\n", dump_dir, strerror(dump_errno));
    errno = dump_errno;
    return -1;
  }
  if (strchr(name, '/') || (size_t)snprintf(path, n, "%s/%s", dump_dir, name) >= n) {
    if (err) rb_buf_printf(err, "cannot dump '%s': bad or too long a name\n", name);
    errno = EINVAL;
    return -1;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && err) rb_buf_printf(err, "cannot create '%s': %s\n", path, strerror(errno));
  return fd;
}
