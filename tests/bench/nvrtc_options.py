#!/usr/bin/env python3
"""nvrtc_options.py: what NVRTC options cost and whether they change the code.

Compiles every kernel source in DIR (from `rabitc --emit=cuda -o DIR MODEL.ir`)
once per option set, one after another in this process through libnvrtc
(ctypes), and prints per set: the CPU time of the compiles (the process's, so
that helper threads such as --split-compile's count; other work on the machine
inflates it less than wall time), the slowest kernel, the cubin bytes, and how
many kernels have SASS byte-identical to the first set's (the .text sections of
the cubin ELF; line tables and embedded PTX are not code). An option that keeps
every kernel identical cannot change kernel speed; any other one needs a GPU
measurement before it becomes a default.

  python3 tests/bench/nvrtc_options.py DIR [--reps N] [--each] [--arch sm_90] -- \\
      "-lineinfo" "" "--Ofast-compile=mid" ...
With --save OUT, set i's cubins go to OUT/i/ (cuobjdump -sass reads them).
Each argument after "--" is one set, added to the fixed numerics
options of runtime/jit/nvrtc.c (without -lineinfo; give it to measure it).
A set with its own --gpu-architecture=compute_90 measures PTX alone (no ptxas),
the part of a compile before PTX -> SASS."""
import argparse
import ctypes
import glob
import hashlib
import os
import struct
import sys
import time

# runtime/jit/nvrtc.c's fixed options, less -lineinfo (which is measured as a set).
FIXED = ["-std=c++17", "--ftz=false", "--prec-div=true", "--prec-sqrt=true", "--fmad=true"]


def load_nvrtc():
    for path in ("/usr/local/cuda/lib64/libnvrtc.so", "libnvrtc.so", "libnvrtc.so.13"):
        try:
            return ctypes.CDLL(path)
        except OSError:
            pass
    sys.exit("nvrtc_options: libnvrtc not found")


def compile_one(nv, src, name, opts):
    """Returns (thread CPU seconds, cubin bytes) or raises with NVRTC's log."""
    prog = ctypes.c_void_p()
    if nv.nvrtcCreateProgram(ctypes.byref(prog), src, name.encode(), 0, None, None):
        raise RuntimeError("nvrtcCreateProgram failed")
    argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
    t0 = time.process_time()
    rc = nv.nvrtcCompileProgram(prog, len(opts), argv)
    t = time.process_time() - t0
    try:
        if rc:
            n = ctypes.c_size_t()
            nv.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
            log = ctypes.create_string_buffer(n.value)
            nv.nvrtcGetProgramLog(prog, log)
            raise RuntimeError(f"{name}: {' '.join(opts)}: {log.value.decode(errors='replace')}")
        n = ctypes.c_size_t()
        nv.nvrtcGetCUBINSize(prog, ctypes.byref(n))
        if n.value == 0:  # a virtual arch (compute_90): PTX only, no SASS
            nv.nvrtcGetPTXSize(prog, ctypes.byref(n))
            return t, b"PTX" + b"\0" * (n.value - 3)
        buf = ctypes.create_string_buffer(n.value)
        nv.nvrtcGetCUBIN(prog, buf)
        return t, buf.raw
    finally:
        nv.nvrtcDestroyProgram(ctypes.byref(prog))


def sass_digest(elf):
    """SHA-1 over the names and bytes of the ELF64 .text.* sections: the SASS."""
    if elf.startswith(b"PTX"):
        return "ptx"
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    heads = [struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    strtab = heads[shstrndx][4]
    h = hashlib.sha1()
    for name, _typ, _flags, _addr, off, size in heads:
        n = elf[strtab + name:elf.index(b"\0", strtab + name)]
        if n.startswith(b".text."):
            h.update(n + elf[off:off + size])
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("sets", nargs="+")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--reps", type=int, default=1, help="compile each kernel N times, keep the fastest")
    ap.add_argument("--each", action="store_true", help="print every kernel's time")
    ap.add_argument("--save", metavar="OUT", help="write each set's cubins to OUT/SET_INDEX/NAME.cubin, for cuobjdump")
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.dir, "*.cu")))
    if not files:
        sys.exit(f"nvrtc_options: no .cu files in {a.dir}")
    nv = load_nvrtc()
    srcs = [open(f, "rb").read() for f in files]
    base = None
    print(f"{len(files)} kernels, {a.arch}, load {os.getloadavg()[0]:.2f}")
    print(f"{'options':40} {'CPU s':>7} {'slowest s':>9} {'cubin KB':>8} {'SASS same':>9}")
    for si, s in enumerate(a.sets):
        arch = [] if "--gpu-architecture=" in s else [f"--gpu-architecture={a.arch}"]
        opts = arch + FIXED + s.split()
        times, digests, size = [], [], 0
        for f, src in zip(files, srcs):
            best = None
            for _ in range(a.reps):
                t, cubin = compile_one(nv, src, os.path.basename(f), opts)
                best = t if best is None else min(best, t)
            times.append(best)
            digests.append(sass_digest(cubin))
            if a.save and not cubin.startswith(b"PTX"):
                os.makedirs(os.path.join(a.save, str(si)), exist_ok=True)
                name = os.path.splitext(os.path.basename(f))[0] + ".cubin"
                with open(os.path.join(a.save, str(si), name), "wb") as out:
                    out.write(cubin)
            size += len(cubin)
        if base is None:
            base = digests
        same = sum(x == y for x, y in zip(base, digests))
        print(f"{s or '(none)':40} {sum(times):7.2f} {max(times):9.2f} {size / 1024:8.0f} {same:5d}/{len(files)}")
        if a.each:
            for f, t, d, b in zip(files, times, digests, base):
                mark = "ptx " if d == "ptx" else "same" if d == b else "DIFF"
                print(f"    {t:6.3f} s {mark}  {os.path.basename(f)}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
