#include "runtime/text/text.h" // expect: layering
