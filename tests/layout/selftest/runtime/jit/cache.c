#include <stdio.h>

#include "runtime/runtime.h" // expect: layering

void cache_warn(const char *msg) {
  fputs(msg, stderr); // expect: library-prints
}
