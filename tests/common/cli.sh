# cli.sh: the shell tests' checks, sourced after `pass=0 fail=0`.
# expect NAME WANT_RC PATTERN CMD...: exit status and a grep pattern over stdout+stderr (kept in $out).
expect() {
  name=$1 want=$2 pat=$3; shift 3
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq "$want" ] && printf '%s\n' "$out" | grep -q -- "$pat"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL $name: rc=$rc (want $want), output:"; printf '%s\n' "$out" | tail -12
  fi
}
# check NAME CONDITION...: a test(1) condition.
check() {
  name=$1; shift
  if [ "$@" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $name: [ $* ]"; fi
}
# lines PATTERN: how many lines of the last expect's output match.
lines() { printf '%s\n' "$out" | grep -c -- "$1"; }
