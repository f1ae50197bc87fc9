/* ops.c: the op and attribute tables, expanded from the X-macros in ir.h. */
#include <string.h>

#include "ir/ir.h"

const IrOpInfo ir_ops[IR_NOP] = {
#define X(e, name, nt, imin, imax, w, allowed, required, quant, shares, shape, grad) \
  [e] = {name, nt, imin, imax, w, allowed, required, quant, shares, shape, grad},
    IR_OPS(X)
#undef X
};

const char *const ir_attr_names[IR_NATTR] = {
#define X(e, s, k) [e] = s,
    IR_ATTRS(X)
#undef X
};

const IrAttrKind ir_attr_kinds[IR_NATTR] = {
#define X(e, s, k) [e] = k,
    IR_ATTRS(X)
#undef X
};

IrOp ir_op_lookup(const char *name) {
  for (int i = 0; i < IR_NOP; i++)
    if (strcmp(ir_ops[i].name, name) == 0) return (IrOp)i;
  return IR_NOP;
}

IrAttr ir_attr_lookup(const char *name) {
  for (int i = 0; i < IR_NATTR; i++)
    if (strcmp(ir_attr_names[i], name) == 0) return (IrAttr)i;
  return IR_NATTR;
}

int ir_op_ntensor(const IrOpInfo *op, int nint) {
  return op->ntensor == IR_NT_PER_INT ? nint + 1 : op->ntensor;
}

const char *ir_dtype_name(IrDtype t) {
  switch (t) {
  case IR_I32: return "i32";
  case IR_F16: return "f16";
  case IR_F32: return "f32";
  }
  return "?";
}
