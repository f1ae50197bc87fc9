#!/bin/sh
# deps.sh: install the Debian packages the build needs, where missing.
# Sourced by quickstart.sh and test.sh; safe to run again. llvm-16-dev is the
# host target's (the build leaves it out where LLVM 16 is missing).
set -e
need=""
for pkg in gcc make cmake pkg-config libxxhash-dev libcjson-dev libpcre2-dev llvm-16-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
  echo "deps: installing$need"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
fi
if [ ! -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null 2>&1; then
  echo "deps: the CUDA toolkit (NVRTC and headers) is needed; expected it at /usr/local/cuda" >&2
  exit 1
fi
