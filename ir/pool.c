/* pool.c: the small thread pool of base.h. Workers sleep on a condition
 * variable between runs; a run hands out chunks of items through one atomic
 * counter, so threads that finish early take more, and the caller works too.
 * A worker spins a while (SPIN_US) before it sleeps, and so does the caller
 * waiting for the last worker: a decode step on the host target is hundreds of
 * short launches back to back, and a wake through the futex costs about what a
 * small kernel does. */
#include <pthread.h>
#include <unistd.h>

#include "ir/base.h"

#define POOL_MAX 64
#define SPIN_US 100.0 /* a launch's gap in a decode step is well under this */

struct RbPool {
  pthread_mutex_t mu;
  pthread_cond_t work, done;
  pthread_t th[POOL_MAX];
  int nthreads;
  unsigned long gen; /* bumped by each run; a worker runs once per new value (atomic) */
  int busy;          /* workers still inside the current run (atomic) */
  int stop;          /* (atomic) */
  /* the current run */
  RbPoolFn fn;
  void *ctx;
  int64_t n, grain, next; /* next: the first item not yet taken (atomic) */
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Spin until done(p, arg), for at most SPIN_US. 1 if it came. */
static int spin(int (*done)(RbPool *, unsigned long), RbPool *p, unsigned long arg) {
  double t0 = rb_now_ms();
  for (int i = 0;; i++) {
    if (done(p, arg)) return 1;
    cpu_relax();
    if ((i & 63) == 63 && (rb_now_ms() - t0) * 1e3 > SPIN_US) return 0;
  }
}

/* A run after the one numbered seen has been posted, or the pool is stopping. */
static int posted(RbPool *p, unsigned long seen) {
  return __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) != seen || __atomic_load_n(&p->stop, __ATOMIC_RELAXED);
}

/* Every worker is out of the current run. */
static int drained(RbPool *p, unsigned long unused) {
  (void)unused;
  return __atomic_load_n(&p->busy, __ATOMIC_ACQUIRE) == 0;
}

/* Take chunks of the current run until none is left. */
static void drain(RbPool *p) {
  for (;;) {
    int64_t b = __atomic_fetch_add(&p->next, p->grain, __ATOMIC_RELAXED);
    if (b >= p->n) return;
    int64_t e = b + p->grain < p->n ? b + p->grain : p->n;
    p->fn(p->ctx, b, e);
  }
}

static void *worker(void *arg) {
  RbPool *p = arg;
  unsigned long seen = 0;
  for (;;) {
    spin(posted, p, seen);
    pthread_mutex_lock(&p->mu);
    while (!p->stop && p->gen == seen) pthread_cond_wait(&p->work, &p->mu);
    if (p->stop) break;
    seen = p->gen;
    pthread_mutex_unlock(&p->mu);
    drain(p);
    pthread_mutex_lock(&p->mu);
    if (__atomic_sub_fetch(&p->busy, 1, __ATOMIC_RELEASE) == 0) pthread_cond_signal(&p->done);
    pthread_mutex_unlock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int rb_pool_open(RbPool **out, int threads) {
  RbPool *p = rb_calloc(1, sizeof *p);
  *out = NULL;
  if (!p) return RB_EINTERNAL;
  if (threads < 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
  if (threads > POOL_MAX) threads = POOL_MAX;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->done, NULL);
  for (; p->nthreads < threads; p->nthreads++)
    if (pthread_create(&p->th[p->nthreads], NULL, worker, p) != 0) break;
  *out = p;
  return RB_OK;
}

void rb_pool_run(RbPool *p, int64_t n, int64_t grain, RbPoolFn fn, void *ctx) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (!p || p->nthreads == 0 || n <= grain) {
    for (int64_t b = 0; b < n; b += grain) fn(ctx, b, b + grain < n ? b + grain : n);
    return;
  }
  pthread_mutex_lock(&p->mu);
  p->fn = fn, p->ctx = ctx, p->n = n, p->grain = grain, p->next = 0;
  p->busy = p->nthreads;
  __atomic_add_fetch(&p->gen, 1, __ATOMIC_RELEASE); /* after the run's fields: a spinning worker reads them next */
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->mu);
  drain(p);
  if (spin(drained, p, 0)) { /* the workers' last writes are ours: busy fell by release */
    pthread_mutex_lock(&p->mu);    /* and the last worker is out of its locked section */
    pthread_mutex_unlock(&p->mu);
    return;
  }
  pthread_mutex_lock(&p->mu);
  while (p->busy) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

int rb_pool_threads(const RbPool *p) { return p ? p->nthreads + 1 : 1; }

void rb_pool_close(RbPool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  __atomic_store_n(&p->stop, 1, __ATOMIC_RELAXED);
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nthreads; i++) pthread_join(p->th[i], NULL);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->done);
  pthread_mutex_destroy(&p->mu);
  rb_free(p);
}
