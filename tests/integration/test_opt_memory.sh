#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ram= and wbuf= larger than the machine (issue 12: ram=1T on a 24 GB
# machine was accepted silently): at mount ram is lowered to half of the
# physical memory and wbuf to a quarter, each with a warning, and the mount
# serves with the lowered values (.kvfs/config). Values that fit are kept,
# with no warning.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

STORE=$T/store
MNT=$T/mnt
mem=$(($(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo) * 1024))
mib=$((1 << 20))
half=$((mem / 2 / mib * mib)) quarter=$((mem / 4 / mib * mib))
cfg() { awk -F= -v k="$1" '$1 == k { print $2 }' "$MNT/.kvfs/config"; }

kv_mount "$STORE" "$MNT" "ram=1T,wbuf=1T"
assert_eq "$(cfg ram)" "$half" "ram=1T at mount (half of $mem bytes)"
assert_eq "$(cfg wbuf)" "$quarter" "wbuf=1T at mount (a quarter of $mem bytes)"
grep -q "warning: ram=1T is more than half of the .* of memory: lowered to $((half / mib))M" \
    "${KV_LOG[$MNT]}" || fail "no warning for ram=1T: $(cat "${KV_LOG[$MNT]}")"
grep -q "wbuf=1T is more than a quarter of the .* of memory: lowered to $((quarter / mib))M" \
    "${KV_LOG[$MNT]}" || fail "no warning for wbuf=1T: $(cat "${KV_LOG[$MNT]}")"
echo data >"$MNT/f"
assert_eq "$(cat "$MNT/f")" data "a file on the mount with lowered budgets"
kv_umount "$MNT"
pass "ram=1T, wbuf=1T: lowered to half and a quarter of memory, with warnings"

kv_mount "$STORE" "$MNT" "ram=64M,wbuf=32M"
assert_eq "$(cfg ram)" $((64 * mib)) "ram=64M at mount"
assert_eq "$(cfg wbuf)" $((32 * mib)) "wbuf=32M at mount"
grep -q "warning" "${KV_LOG[$MNT]}" && fail "a warning for budgets that fit: $(cat "${KV_LOG[$MNT]}")"
kv_umount "$MNT"
pass "budgets that fit are kept, without a warning"
