/* test_key.c: the key changes with every field, is stable for equal parts,
 * and cannot be fooled by moving bytes across a field boundary. */
#include <stdio.h>
#include <string.h>

#include "util.h"

static int eq(RtKey a, RtKey b) { return a.hi == b.hi && a.lo == b.lo; }

int main(void) {
  RtKeyParts base = {"__global__ void k() {}", "-O3 --std=c++17", "sm_90",
                     "nvrtc 13.0 builtins 0123abcd", "0.1.0"};
  RtKey k0 = rt_key_make(&base);

  /* Equal parts, equal key, even from different buffers. */
  char src[64];
  strcpy(src, base.source);
  RtKeyParts same = base;
  same.source = src;
  CHECK(eq(rt_key_make(&same), k0));

  /* Any single field changes the key. */
  const char **fields[] = {&same.source, &same.options, &same.arch, &same.compiler_id,
                           &same.tool_version};
  const char *changed[] = {"__global__ void k() { }", "-O3 --std=c++20", "sm_90a",
                           "nvrtc 13.0 builtins 0123abce", "0.1.1"};
  RtKey seen[5];
  for (int i = 0; i < 5; i++) {
    same = base;
    *fields[i] = changed[i];
    seen[i] = rt_key_make(&same);
    if (eq(seen[i], k0)) fprintf(stderr, "field %d does not change the key\n", i);
    CHECK(!eq(seen[i], k0));
    for (int j = 0; j < i; j++) CHECK(!eq(seen[i], seen[j]));
  }

  /* Field boundaries: ("ab","c") vs ("a","bc"), and across every pair. */
  RtKeyParts p1 = {"ab", "c", "sm_90", "id", "v"}, p2 = {"a", "bc", "sm_90", "id", "v"};
  CHECK(!eq(rt_key_make(&p1), rt_key_make(&p2)));
  RtKeyParts p3 = {"a", "b", "c", "d", "e"}, p4 = {"a", "b", "cd", "", "e"};
  CHECK(!eq(rt_key_make(&p3), rt_key_make(&p4)));
  RtKeyParts p5 = {"a", "b", "c", "d", "e"}, p6 = {"a", "b", "c", "de", ""};
  CHECK(!eq(rt_key_make(&p5), rt_key_make(&p6)));
  /* A length prefix must not be forgeable from inside a field either. */
  RtKeyParts p7 = {"x", "", "", "", ""}, p8 = {"", "x", "", "", ""};
  CHECK(!eq(rt_key_make(&p7), rt_key_make(&p8)));
  /* NULL is not "". */
  RtKeyParts p9 = {"x", NULL, "sm_90", "id", "v"}, p10 = {"x", "", "sm_90", "id", "v"};
  CHECK(!eq(rt_key_make(&p9), rt_key_make(&p10)));

  /* Hex: 32 lowercase digits, hi then lo. */
  char hex[33], want[40];
  rt_key_hex(k0, hex);
  snprintf(want, sizeof want, "%016llx%016llx", (unsigned long long)k0.hi,
           (unsigned long long)k0.lo);
  CHECK(strlen(hex) == 32 && strcmp(hex, want) == 0);
  rt_key_hex((RtKey){0xABCDEF0123456789ull, 1}, hex);
  CHECK(strcmp(hex, "abcdef01234567890000000000000001") == 0);

  return tu_finish("cache_key");
}
