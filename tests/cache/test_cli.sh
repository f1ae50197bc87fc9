#!/bin/sh
# test_cli.sh RABITC SAMPLES: the cache as rabitc users meet it: a failed
# kernel's source dumped privately (a link planted at the old /tmp path is
# left alone), a full disk said once, a read-only cache used and reported,
# a stray directory named by `cache clear`, a 0755 cache made private.
# Read-only needs modes enforced: as root it runs under setpriv as nobody,
# or is skipped, said so.
rabitc=$1 samples=$2
pass=0 fail=0 skip=0
tmp=$(mktemp -d); trap 'chmod -R u+rwx "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
cache="$tmp/cache"
export RABIT_CACHE_DIR="$cache"

. "$(dirname "$0")/../common/cli.sh" # expect, check, lines

# 1. A failing kernel's source: not at the predictable path, where a link waits.
echo precious > "$tmp/victim"
ln -s "$tmp/victim" "$tmp/rb_rmsnorm_d64_b50037.cu"
expect dump-private 1 "its source is in $tmp/rabit-kernels-[A-Za-z0-9]\{6\}/rb_rmsnorm_d64_b50037.cu" \
  env RABIT_NVRTC_OPTIONS=--no-such-option TMPDIR="$tmp" "$rabitc" --arch sm_90 "$samples/tiny.ir"
check dump-victim-untouched "$(cat "$tmp/victim")" = precious
dumpdir=$(ls -d "$tmp"/rabit-kernels-* | head -1)
check dump-dir-0700 "$(stat -c %a "$dumpdir")" = 700
check dump-file-0600 "$(stat -c %a "$dumpdir/rb_rmsnorm_d64_b50037.cu")" = 600

# 2. A full disk (writes failing with EFBIG under a 1-block file-size limit):
# every kernel still compiles, and the failure is said once, not 36 times.
expect full-disk 0 "36 compiled" sh -c "trap '' XFSZ; ulimit -f 1; exec \"$rabitc\" --arch sm_80 \"$samples/tiny.ir\""
check full-disk-said-once "$(lines 'kernel cache: cannot write')" -eq 1
check full-disk-one-line "$(lines 'File too large (kernels not stored are rebuilt next time; further failures to store are not reported)')" -eq 1
check full-disk-no-entry "$(ls "$cache" | grep -c 'cubin$')" -eq 0

# 3. A read-only cache holding valid entries: hits, counted, and not cleared.
"$rabitc" --arch sm_80 "$samples/tiny.ir" > /dev/null 2>&1
as_user=""
if [ "$(id -u)" -eq 0 ]; then
  if command -v setpriv > /dev/null && setpriv --reuid=65534 --regid=65534 --clear-groups true 2> /dev/null; then
    chown -R 65534:65534 "$cache"; as_user="setpriv --reuid=65534 --regid=65534 --clear-groups"
  else
    as_user=none
  fi
fi
if [ "$as_user" = none ]; then
  echo "SKIP read-only cache: running as root and setpriv cannot drop to nobody, so modes are not enforced"
  skip=$((skip + 1))
else
  chmod 500 "$cache"
  expect ro-hits 0 "kernels for sm_80: 0 compiled, 36 from the cache" $as_user "$rabitc" --arch sm_80 "$samples/tiny.ir"
  check ro-warned-once "$(lines "kernel cache directory '$cache' is read-only (Permission denied); its kernels are used")" -eq 1
  expect ro-stats 0 "entries: 36" $as_user "$rabitc" cache stats
  expect ro-stats-says 0 "cache:   $cache (read-only)" $as_user "$rabitc" cache stats
  expect ro-clear 1 "removed 0 entries" $as_user "$rabitc" cache clear
  expect ro-clear-names 1 "rabitc: kernel cache: cannot remove '$cache/[0-9a-f]\{32\}\.\(cubin\|lock\)': Permission denied" \
    $as_user "$rabitc" cache clear
  n=$(ls "$cache" | wc -l)  # 36 entries, and a lock file for each kernel tried (with the failing options too)
  expect ro-clear-count 1 "rabitc: $n files in '$cache' could not be removed" $as_user "$rabitc" cache clear
  check ro-entries-stay "$(ls "$cache" | grep -c 'cubin$')" -eq 36
  chmod 700 "$cache"; chown -R 0:0 "$cache" 2> /dev/null
fi

# 4. A stray directory with an entry's name: not counted; clear removes the
# rest, names it, and exits 1.
stray="$cache/0123456789abcdef0123456789abcdef.cubin"
mkdir "$stray"
expect stray-not-counted 0 "entries: 36" "$rabitc" cache stats
expect stray-clear 1 "removed 36 entries" "$rabitc" cache clear
check stray-named "$(lines "rabitc: kernel cache: cannot remove '$stray': Is a directory")" -eq 1
check stray-count "$(lines "rabitc: 1 file in '$cache' could not be removed")" -eq 1
check stray-stays -d "$stray"
rmdir "$stray"
expect clear-clean 0 "removed 0 entries" "$rabitc" cache clear

# 5. An existing 0755 cache: made private when ours; someone else's is named.
chmod 755 "$cache"
expect mode-quiet 0 "entries: 0" "$rabitc" cache stats
check mode-no-warning "$(lines warning)" -eq 0
check mode-tightened "$(stat -c %a "$cache")" = 700
if [ "$(id -u)" -eq 0 ]; then
  chown 65534 "$cache"; chmod 755 "$cache"
  expect mode-theirs 0 "rabitc: warning: kernel cache directory '$cache' has mode 0755 and belongs to uid 65534, not to you; other users can read its kernels" \
    "$rabitc" cache stats
  check mode-theirs-kept "$(stat -c %a "$cache")" = 755
else
  echo "SKIP mode-theirs: not root, so no directory of another user's can be made"; skip=$((skip + 1))
fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
