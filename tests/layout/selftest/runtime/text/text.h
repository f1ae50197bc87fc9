#include "model.h" /* a header called model.h is not the ".h" suffix */
int rt_tokenize(const char *s);
