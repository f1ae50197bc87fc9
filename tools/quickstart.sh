#!/bin/sh
# quickstart.sh: set everything up and run the main job. Installs missing
# Debian packages, builds, and compiles a sample model with rabitc; where a GPU
# is present it also runs the generated kernels against the CPU reference.
set -e
cd "$(dirname "$0")/.."
sh tools/deps.sh
cmake -S . -B build -DCUDAToolkit_ROOT=/usr/local/cuda -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
model=${1:-samples/smollm2-135m.ir}
echo "== rabitc $model"
build/tools/rabitc "$model"
if [ -e /dev/nvidia0 ] || command -v nvidia-smi >/dev/null 2>&1; then
  echo "== GPU found: running the generated kernels against the CPU reference"
  ctest --test-dir build -L gpu --output-on-failure
else
  echo "== no GPU here: kernels were compiled and cached; running them needs an NVIDIA GPU and driver"
fi
