#!/bin/sh
# test.sh: the whole test suite, as CI runs it. Installs missing Debian
# packages, builds with -Werror, AddressSanitizer and UBSan, and runs ctest.
# GPU tests print "SKIP: <reason>" and count as skipped when there is no GPU.
set -e
cd "$(dirname "$0")/.."
sh tools/deps.sh
cmake -S . -B build-test -DCUDAToolkit_ROOT=/usr/local/cuda -DCMAKE_BUILD_TYPE=Debug \
      -DRABIT_WERROR=ON -DRABIT_SANITIZE=ON >/dev/null
cmake --build build-test -j"$(nproc)"
# LeakSanitizer on (the default of ASan on Linux, said here so that no
# inherited ASAN_OPTIONS turns it off): a leak fails the test that hit it.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
rc=0
ctest --test-dir build-test --output-on-failure -j"$(nproc)" "$@" || rc=$?
# ctest hides the output of skipped tests: show why they skipped.
grep -h "^SKIP:" build-test/Testing/Temporary/LastTest.log 2>/dev/null | sort | uniq -c | sed 's/^/skipped: /' || true
exit $rc
