/* rng.h: the tests' random numbers: xorshift64, fast enough to fill a 7B
 * model's bits, and seeded per test (set test_rng before use). */
#ifndef RABIT_TEST_RNG_H
#define RABIT_TEST_RNG_H

#include <stdint.h>

static uint64_t test_rng = 0x9E3779B97F4A7C15ull; /* never 0 */

static inline uint64_t rnd(void) {
  test_rng ^= test_rng << 13;
  test_rng ^= test_rng >> 7;
  test_rng ^= test_rng << 17;
  return test_rng;
}

/* Uniform in [0, 1). */
static inline double unif(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }

#endif
