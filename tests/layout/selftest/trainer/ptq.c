#include "tools/load.h" // expect: tools-include

void pack(unsigned *wb, int K, int j, unsigned *words) {
  wb[j >> 5] |= 1u << (j & 31); /* a bit index, not the word count */
  *words = (K + 31) >> 5; // expect: packed-format
}
