#!/bin/sh
# quickstart.sh: set everything up and run the main job. Installs missing
# Debian packages, builds, and compiles a sample model with rabitc; where a GPU
# is present it also runs the generated kernels against the CPU reference;
# where none is, it runs a model on the host target (this CPU, through LLVM):
# SmolLM2-135M when tools/fetch_data.sh has fetched it, else tiny.ir.
# Each stage prints one line first; the build shows cmake's own progress.
set -e
cd "$(dirname "$0")/.."
echo "== [1/4] checking the Debian packages (tools/deps.sh)"
sh tools/deps.sh
echo "== [2/4] configuring the build in build/ (cmake)"
cmake -S . -B build -DCUDAToolkit_ROOT=/usr/local/cuda -DCMAKE_BUILD_TYPE=Release >/dev/null
echo "== [3/4] building with $(nproc) jobs (about 20 s the first time)"
# cmake's own progress ("[ 42%] Building C object ..."), and any compiler error.
cmake --build build -j"$(nproc)"
model=${1:-samples/smollm2-135m.ir}
echo "== [4/4] rabitc $model"
build/tools/rabitc "$model"
cache=$(build/tools/rabitc cache stats | sed -n 's/^cache: *//p')
echo "== the compiled kernels are cached in $cache ('build/tools/rabitc cache stats' and 'cache clear')"
if [ -e /dev/nvidia0 ] || command -v nvidia-smi >/dev/null 2>&1; then
  echo "== GPU found: running the generated kernels against the CPU reference"
  ctest --test-dir build -L gpu --output-on-failure
else
  echo "== no GPU here: running a model on the host target instead (the same kernels, for this CPU, through LLVM)"
  gguf=data/SmolLM2-135M-Instruct.Q4_1.gguf
  if [ -f "$gguf" ]; then
    [ -f data/smollm2/model.safetensors ] || build/tools/rabit import "$gguf" -o data/smollm2 >/dev/null
    set -- build/tools/rabit run samples/smollm2-135m.ir --target host --fp16 --weights data/smollm2/model.safetensors \
      --chat --prompt "What is the capital of France?" -n 32 --max-ctx 256
  else
    set -- build/tools/rabit run samples/tiny.ir --target host --random-weights --tokens 1,2,3,4 -n 16
  fi
  echo "== $*"
  if "$@"; then
    [ -f "$gguf" ] || echo "== (tiny.ir, random weights: 'sh tools/fetch_data.sh' fetches SmolLM2-135M, then this runs it)"
  else
    echo "== the host target did not run (a build without LLVM 16 says so above); running kernels then needs an NVIDIA GPU"
  fi
fi
