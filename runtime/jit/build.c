/* build.c: a model's kernels compiled in parallel through the cache.
 * Each worker takes the next spec, emits its canonical source, derives the
 * key and fetches the cubin or compiles it under the key's lock. NVRTC
 * programs are independent, so distinct kernels compile concurrently. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "runtime/jit/jit.h"

typedef struct {
  const CgSpec *specs;
  int n;
  const RtBuildOptions *o;
  RtBuilt *out;
  int next; /* the next spec to take (atomic) */
} Work;

typedef struct {
  const char *source, *entry, *arch;
  RbBuf *log;
} Compile;

/* The options in the key: the defaults, then $RABIT_NVRTC_OPTIONS (extra
 * NVRTC options separated by spaces, for kernel experiments such as
 * -maxrregcount=64; they change the key, so they never mix with plain builds). */
#define MAX_EXTRA 16
static char options_string[1024], extra_store[512];
static const char *extra[MAX_EXTRA];
static int nextra;

static void options_init(void) {
  size_t used = 0;
  for (int i = 0; i < rt_nvrtc_default_nopts; i++)
    used += (size_t)snprintf(options_string + used, sizeof options_string - used, "%s%s", i ? " " : "",
                             rt_nvrtc_default_opts[i]);
  const char *env = getenv("RABIT_NVRTC_OPTIONS");
  snprintf(extra_store, sizeof extra_store, "%s", env ? env : "");
  for (char *save = NULL, *t = strtok_r(extra_store, " ", &save); t && nextra < MAX_EXTRA;
       t = strtok_r(NULL, " ", &save)) {
    extra[nextra++] = t;
    used += (size_t)snprintf(options_string + used, sizeof options_string - used, " %s", t);
  }
}

const char *rt_build_options_string(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, options_init);
  return options_string;
}

static int compile_cb(void *ctx, void **data, size_t *len) {
  Compile *c = ctx;
  return rt_nvrtc_compile(c->source, c->entry, c->arch, extra, nextra, data, len, c->log);
}

static void build_one(const CgSpec *s, const RtBuildOptions *o, RtBuilt *b) {
  double t0 = rb_now_ms();
  b->rc = cg_emit(s, &b->source, b->entry, &b->log);
  if (b->rc != RB_OK) return;
  if (b->source.oom) {
    b->rc = RB_EINTERNAL;
    return;
  }
  RtKeyParts parts = {b->source.data, rt_build_options_string(), o->arch, rt_nvrtc_id(), RABIT_VERSION};
  b->key = rt_key_make(&parts);
  Compile c = {b->source.data, b->entry, o->arch, &b->log};
  b->rc = rt_cache_fetch(o->cache, b->key, compile_cb, &c, &b->cubin, &b->len, &b->hit, &b->log);
  b->ms = rb_now_ms() - t0;
}

static void *worker(void *arg) {
  Work *w = arg;
  for (;;) {
    int i = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED);
    if (i >= w->n) return NULL;
    build_one(&w->specs[i], w->o, &w->out[i]);
  }
}

int rt_build_kernels(const CgSpec *specs, int n, const RtBuildOptions *o, RtBuilt *out) {
  memset(out, 0, (size_t)n * sizeof *out);
  (void)rt_nvrtc_id(); /* computed once, before the threads race for it */
  (void)rt_build_options_string();
  Work w = {specs, n, o, out, 0};
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
  CgSpec *specs = rb_calloc((size_t)ks->n + 1, sizeof *specs);
  *built = rb_calloc((size_t)ks->n + 1, sizeof **built);
  if (!specs || !*built) {
    rb_free(specs);
    rb_free(*built);
    *built = NULL;
    return RB_EINTERNAL;
  }
  for (int i = 0; i < ks->n; i++) specs[i] = ks->k[i].spec;
  int rc = rt_build_kernels(specs, ks->n, o, *built);
  rb_free(specs);
  return rc;
}

void rt_built_free(RtBuilt *b, int n) {
  for (int i = 0; i < n; i++) {
    rb_free(b[i].cubin);
    rb_buf_free(&b[i].source);
    rb_buf_free(&b[i].log);
  }
}
