#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# kvfsctl ls prints one row per context whatever its name (issue 12): a
# name is any bytes but '/' and NUL, and printed raw a newline in one
# forged a row, a tab or space shifted the columns, and an escape sequence
# reached the terminal. Control bytes, spaces, backslashes and bytes that
# are not UTF-8 are written \ooo (octal, as in /proc/self/mountinfo); valid
# UTF-8 is printed as it is; a printf format gives the name back.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

STORE=$T/store
MNT=$T/mnt
kv_mount "$STORE" "$MNT"

# name (printf %b form) and how kvfsctl ls must print it (UTF-8 as it is)
declare -A WANT=(
    ['plain']='plain'
    ['pct%s%%']='pct%s%%'
    ['forged\n2026-01-01 00:00:00  1 1 0 1\nns-evil']='forged\0122026-01-01\04000:00:00\040\0401\0401\0400\0401\012ns-evil'
    ['tab\there']='tab\011here'
    ['sp ace']='sp\040ace'
    ['back\\slash']='back\134slash'
    ['\033[31mred']='\033[31mred'
    ['del\177']='del\177'
    ['bad\377\376utf8']='bad\377\376utf8'
    ['c1\302\205']='c1\302\205'
    ['overlong\300\257']='overlong\300\257'
    ['surrogate\355\240\200']='surrogate\355\240\200'
    ['h\303\251llo-\346\227\245\346\234\254-\360\237\230\200']=$'h\303\251llo-\346\227\245\346\234\254-\360\237\230\200'
)
for name in "${!WANT[@]}"; do
    mkdir -p "$MNT/ns/$(printf '%b' "$name")"
    printf 'kv' >"$MNT/ns/$(printf '%b' "$name")/layer0"
done
nl=$(printf 'ns\nx')
mkdir -p "$MNT/$nl/ctx"

out=$("$KVFSCTL" ls "$MNT")
# one header, one row per context: no name forged or split a row
assert_eq "$(wc -l <<<"$out")" $((1 + ${#WANT[@]} + 1)) "rows of kvfsctl ls"
names=$(tail -n +2 <<<"$out" | awk '{ print $1 }' | LC_ALL=C sort)
want=$( (printf 'ns/%s\n' "${WANT[@]}"; printf '%s\n' 'ns\012x/ctx') | LC_ALL=C sort)
diff <(printf '%s\n' "$want") <(printf '%s\n' "$names") >&2 ||
    fail "kvfsctl ls: names (< expected, > printed)"
# every row has all its columns: name, date, time, logical, stored, ttl, pin
check 'tail -n +2 <<<"$out" | awk "NF != 7 { bad = 1 } END { exit bad }"' "a row without 7 columns: $out"
# nothing the terminal would act on, and nothing that is not UTF-8
check '! LC_ALL=C grep -q "[[:cntrl:]]" <<<"$out"' "control bytes in kvfsctl ls: $out"
check 'iconv -f UTF-8 -t UTF-8 <<<"$out" >/dev/null' "kvfsctl ls printed bytes that are not UTF-8"
# a printf format reads a printed name back (%b would take \0122 as one
# escape; a format's \NNN has at most three digits)
for name in "${!WANT[@]}"; do
    printed=ns/${WANT[$name]}
    # shellcheck disable=SC2059
    [ -d "$MNT/$(printf -- "${printed//%/%%}")" ] || fail "'$printed' read back is no context"
done
pass "kvfsctl ls: hostile names escaped, one row each, read back by printf"

# ls MOUNT NAMESPACE with a namespace whose name holds a newline
out=$("$KVFSCTL" ls "$MNT" "$nl")
assert_eq "$(tail -n +2 <<<"$out" | awk '{ print $1 }')" 'ns\012x/ctx' "kvfsctl ls of namespace ns<newline>x"
kv_umount "$MNT"
pass "kvfsctl ls NAMESPACE: the namespace's name is escaped too"
