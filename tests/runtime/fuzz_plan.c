/* fuzz_plan: libFuzzer target over the plan parser. A plan file comes from
 * disk and may be damaged; the parser must refuse it with a message or give a
 * plan whose every index is in range and which formats back to text that
 * parses to the same plan. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0;
  RtPlan *p = NULL;
  RbBuf err = {0};
  if (rt_plan_parse("fuzz.rplan", text, &p, &err) == RB_OK) {
    for (int i = 0; i < p->nsteps; i++) {
      const RtPlanStep *s = &p->steps[i];
      const CgNodeKernels *k = &s->kernels;
      int roles[] = {k->main, k->rope, k->repack};
      for (int j = 0; j < 3; j++)
        if (roles[j] < -1 || roles[j] >= p->nkernels) abort();
      for (int j = 0; j < k->nbucket; j++)
        if (k->bucket[j] < 0 || k->bucket[j] >= p->nkernels) abort();
      for (int j = 0; j < s->nin; j++)
        if (s->in[j] < 0 || s->in[j] >= p->nvalues) abort();
      for (int j = 0; j < s->nout; j++)
        if (s->out[j] < 0 || s->out[j] >= p->nvalues) abort();
    }
    RbBuf t1 = {0}, t2 = {0}, e2 = {0};
    rt_plan_format(p, &t1);
    RtPlan *q = NULL;
    if (rt_plan_parse("again.rplan", t1.data, &q, &e2) != RB_OK) { /* what we write, we read */
      fprintf(stderr, "fuzz_plan: the formatted plan does not parse back: %s\n", e2.data ? e2.data : "?");
      abort();
    }
    rt_plan_format(q, &t2);
    if (strcmp(t1.data, t2.data) != 0) abort();
    rt_plan_free(q);
    rb_buf_free(&t1);
    rb_buf_free(&t2);
    rb_buf_free(&e2);
  }
  rt_plan_free(p);
  rb_buf_free(&err);
  free(text);
  return 0;
}
