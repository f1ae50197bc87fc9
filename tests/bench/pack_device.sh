#!/bin/sh
# pack_device.sh [OLD_REV]: what a device call carries, in .carry/ (ignored):
#   .carry/new   a Release build of the working tree: the tools, the GPU tests, bench_chain
#   .carry/old   the same binaries built from OLD_REV, for run_device.sh compare
#   .carry/lib   libcjson (the device machine has none), .carry/peers the peer scripts
# Build here, run there: the device machine has no xxhash.h, cJSON or LLVM.
set -e
cd "$(dirname "$0")/../.."
build() { # build SRC_DIR BUILD_DIR DEST
  cmake -S "$1" -B "$2" -DCUDAToolkit_ROOT=/usr/local/cuda -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$2" -j"$(nproc)" >/dev/null
  rm -rf "$3"
  mkdir -p "$3/tools" "$3/tests/gpu" "$3/tests/bench" "$3/tests/runtime" "$3/tests/train"
  cp "$2/tools/rabitc" "$2/tools/rabit" "$3/tools/"
  cp "$2"/tests/gpu/gpu_test_* "$3/tests/gpu/"
  cp "$2/tests/bench/bench_chain" "$3/tests/bench/"
  cp "$2/tests/runtime/runtime_test_gpu_smoke" "$3/tests/runtime/"
  [ -f "$2/tests/train/test_gradcheck_peer" ] && cp "$2/tests/train/test_gradcheck_peer" "$3/tests/train/" || true
}
build . build-dev .carry/new
if [ -n "${1:-}" ]; then
  rm -rf /tmp/rabit-old-tree
  git worktree add -f --detach /tmp/rabit-old-tree "$1" >/dev/null
  build /tmp/rabit-old-tree build-old .carry/old
  git worktree remove --force /tmp/rabit-old-tree
fi
mkdir -p .carry/lib .carry/peers
cp -L /usr/lib/x86_64-linux-gnu/libcjson.so.1 .carry/lib/
cp ../shared/peers/*.py .carry/peers/
du -sh .carry
