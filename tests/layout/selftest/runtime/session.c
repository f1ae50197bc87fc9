#include "runtime/rabit.h" /* the public API's implementation: fine */
#include "runtime/runtime.h"

int launch(int k);
int rt_run(const RtStep *st, int j) {
  if (j) return launch(st->kernel[j]); /* not positional */
  return launch(st->kernel[3]); // expect: kernel-index
}
