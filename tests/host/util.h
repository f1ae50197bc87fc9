/* util.h: what the host-target tests share: a CHECK that counts failures, a
 * fresh cache directory, fp16 random data, and building and loading kernels
 * through the cache into one JIT. */
#ifndef RABIT_HOST_TEST_UTIL_H
#define RABIT_HOST_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/jit/jit.h"

extern int hu_failures;

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr, "\n");                                               \
      hu_failures++;                                                       \
    }                                                                      \
  } while (0)

/* A fresh directory under $TMPDIR (or /tmp); exits on failure. */
char *hu_tmpdir(const char *tag);
void hu_rm_rf(const char *path);

/* Uniform in [lo, hi), rounded to fp16: f gets the float, h (if not NULL) the bits. */
void hu_seed(uint64_t s);
void hu_fill(float *f, uint16_t *h, size_t n, float lo, float hi);
uint32_t hu_rand(void);

/* Build kernels[0..n) for the host through cache (jobs 2) and load each into
 * jit: fn[i] its entry, built[i] what the build said (hit, ms). Returns the
 * worst rc; failures are printed. warn collects the loader's reports. */
int hu_build_load(const CgKernel *kernels, int n, RtCache *cache, RtHostJit *jit, RtBuilt *built, CgHostEntry *fn,
                  RbBuf *warn);

/* The kernel tests' setting: a fresh cache directory (*dir, tag in its name), the cache in
 * it, the JIT and a pool of 2 threads. Exits 2 with the reason when one cannot be had. */
void hu_env_open(const char *tag, char **dir, RtCache **cache, RtHostJit **jit, RbPool **pool);
/* CHECKs that the loader reported nothing in warn, closes what hu_env_open opened, frees
 * warn and removes dir. */
void hu_env_close(char *dir, RtCache *cache, RtHostJit *jit, RbPool *pool, RbBuf *warn);

int hu_finish(const char *name, double t0_ms);

#endif
