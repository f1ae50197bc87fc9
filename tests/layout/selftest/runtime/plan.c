#include "runtime/runtime.h"

typedef struct { int n; struct { int spec; } k[8]; } KernelSet;
int first_spec(const KernelSet *ks) {
  int s = 0;
  for (int i = 0; i < ks->n; i++) s += ks->k[i].spec; /* iterating: fine */
  return s + ks->k[0].spec; // expect: kernel-index
}
