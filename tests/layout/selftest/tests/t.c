/* tests/ is never checked: none of these fire. */
#include <stdio.h>
#include "runtime/rabit.h"
#include "tools/load.h"
int main(void) { printf("%s %d\n", ".bits", (40 + 31) / 32); return 0; }
