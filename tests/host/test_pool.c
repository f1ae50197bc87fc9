/* test_pool.c: the base library's thread pool (ir/pool.c): every item of a
 * run is visited exactly once, on several threads, run after run; n smaller
 * than a chunk, n = 0 and a NULL pool run on the caller alone. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "ir/base.h"

static int failures;
#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); failures++; } } while (0)

typedef struct {
  int *seen;
  pthread_t threads[8];
  int nthreads;
  pthread_mutex_t mu;
} Ctx;

static void visit(void *arg, int64_t b, int64_t e) {
  Ctx *c = arg;
  for (int64_t i = b; i < e; i++) __atomic_fetch_add(&c->seen[i], 1, __ATOMIC_RELAXED);
  pthread_mutex_lock(&c->mu);
  int known = 0;
  for (int i = 0; i < c->nthreads; i++) known |= pthread_equal(c->threads[i], pthread_self());
  if (!known && c->nthreads < 8) c->threads[c->nthreads++] = pthread_self();
  pthread_mutex_unlock(&c->mu);
}

int main(void) {
  RbPool *p;
  CHECK(rb_pool_open(&p, 3) == RB_OK, "open");
  CHECK(rb_pool_threads(p) == 4, "threads %d", rb_pool_threads(p));
  enum { N = 100003 };
  Ctx c = {.seen = calloc(N, sizeof(int))};
  pthread_mutex_init(&c.mu, NULL);
  for (int run = 0; run < 50; run++) rb_pool_run(p, N, 97, visit, &c);
  int bad = 0;
  for (int i = 0; i < N; i++) bad += c.seen[i] != 50;
  CHECK(bad == 0, "%d items not visited exactly once per run", bad);
  CHECK(c.nthreads >= 2, "work ran on %d thread(s)", c.nthreads);
  for (int i = 0; i < 10; i++) c.seen[i] = 0;
  rb_pool_run(p, 10, 64, visit, &c);  /* one chunk */
  rb_pool_run(p, 0, 1, visit, &c);    /* nothing */
  rb_pool_run(NULL, 10, 3, visit, &c); /* the caller alone */
  for (int i = 0; i < 10; i++) CHECK(c.seen[i] == 2, "item %d seen %d times", i, c.seen[i]);
  rb_pool_close(p);
  rb_pool_close(NULL);
  free(c.seen);
  if (failures) return fprintf(stderr, "FAIL host_pool\n"), 1;
  printf("PASS host_pool\n");
  return 0;
}
