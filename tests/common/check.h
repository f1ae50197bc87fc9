/* check.h: the assertion the C tests share. CHECK counts every check and
 * prints each failure with its place; CHECK_SUMMARY prints the closing line
 * "N passed, M failed" and gives the exit status. Include it in one file. */
#ifndef RABIT_TEST_CHECK_H
#define RABIT_TEST_CHECK_H

#include <stdio.h>

static int checks, failures;

#define CHECK(cond, ...)                          \
  do {                                            \
    checks++;                                     \
    if (!(cond)) {                                \
      failures++;                                 \
      printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      printf(__VA_ARGS__);                        \
      printf("\n");                               \
    }                                             \
  } while (0)

#define CHECK_SUMMARY() (printf("%d passed, %d failed\n", checks - failures, failures), failures != 0)

#endif
