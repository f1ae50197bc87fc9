/* The op table: the checker adds these spellings to its op names. */
#define IR_OPS(X) \
  X(IR_EMBED, "embed", 1) \
  X(IR_FANCY, "fancy", 2)
