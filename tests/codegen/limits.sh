#!/bin/sh
# limits.sh RABITC SAMPLES DIR: sizes no kernel can index are refused at the op,
# never cut to 32 bits. Each case is samples/tiny.ir with one sed edit (or
# DIR/NAME.ir as it is), compiled up to kernel selection (--list-kernels, so
# no GPU is asked for); its diagnostics must equal DIR/NAME.err byte for byte
# and the exit status must be 1 (a user error). Regenerate with UPDATE=1.
rabitc=$1 samples=$2 dir=$3
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
rabitc=$(abs "$rabitc") samples=$(abs "$samples") dir=$(abs "$dir")
pass=0 fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"

# case NAME [SED]: NAME.ir from tiny.ir edited by SED, or DIR/NAME.ir without one.
case_() {
  name=$1
  if [ -n "$2" ]; then
    sed "$2" "$samples/tiny.ir" > "$tmp/$name.ir"
    if cmp -s "$samples/tiny.ir" "$tmp/$name.ir"; then
      fail=$((fail + 1)); echo "FAIL $name: '$2' changes nothing in tiny.ir"; return
    fi
  else
    cp "$dir/$name.ir" "$tmp/$name.ir"
  fi
  out=$(cd "$tmp" && "$rabitc" --list-kernels "$name.ir" 2>&1 >/dev/null); rc=$?
  if [ -n "$UPDATE" ]; then printf '%s\n' "$out" > "$dir/$name.err"; echo "updated $name.err"; return; fi
  if [ "$rc" -eq 1 ] && [ "$out" = "$(cat "$dir/$name.err")" ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL $name: rc=$rc (want 1), diagnostics:"
    printf '%s\n' "$out" | diff -u "$dir/$name.err" - | head -20
  fi
}

# The verifier: dims, size arguments and f32 attributes within the IR's limits.
case_ vocab_2p32_plus_256 's/V = 256,/V = 4294967552,/'         # was: embed V=256, exit 0
case_ width_2p32_plus_64 's/D = 64,/D = 4294967360,/'           # was: every kernel for D = 64
case_ vocab_width_2p31 's/V = 256, D = 64/V = 2147483648, D = 2147483648/'  # was: V=-2147483648
case_ eps_1e-300 's/EPS = 1e-5/EPS = 1e-300/'                   # was: eps=0
case_ eps_negative_tiny 's/EPS = 1e-5/EPS = -1e-46/'            # rounds to -0
case_ theta_over_f32 's/THETA = 10000.0/THETA = 1e39/'          # rounds to inf
case_ head_dim_2p31 's/head_dim = HD/head_dim = 2147483648/'
case_ scale_1e-300                                              # hidden_mse scale, in source
# Kernel selection: T-independent products within the kernels' index type.
case_ ffn_nk_over_2p31 's/F = 160,/F = 33554433,/'              # N * K = 2^31 + 64
case_ table_vd_over_2p31 's/V = 256,/V = 33554433,/'            # V * D = 2^31 + 64 (and the tied head)
case_ width_words_over_2p31 's/D = 64,/D = 1048576,/'           # k * N * ceil(K/32) words
case_ segments_over_2p31                                        # N of fused segments together

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
