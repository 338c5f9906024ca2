#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# Issue 12, defect 5: on a full backing filesystem SQLite could not write,
# so nothing could be deleted through the mount (rm, rmdir: EIO) and
# eviction failed (.kvfs/evict: ENOSPC, kvfsctl evict blamed pinned
# contexts). The index's reserve (kvfs.reserve, docs/reliability.md) is
# given up for deletions: with the backing filesystem full (data, then
# directories until the index has no room either), rm, rm -rf of a
# context, .kvfs/evict and kvfsctl evict must work and free space, while
# mkdir, setxattr and rename get ENOSPC, never EIO.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

FS=$T/fs
kv_small_fs "$FS" 32m
STORE=$FS/store
MNT=$T/mnt

kv_mount "$STORE" "$MNT" chunk=64K,codec=none
r=$(stat -c %s "$STORE/kvfs.reserve")
assert_eq "$r" 1048576 "size of the index's reserve on a 32 MiB filesystem"

avail() { df -B1 --output=avail "$FS" | tail -n 1 | tr -d ' '; }
# the bytes the segments take on the backing filesystem (what a deletion
# frees; the free space itself goes to the reserve first when it is out)
segbytes() { du -s -B1 "$STORE/segments" | cut -f1; }
# freed WHAT BEFORE: segments smaller than BEFORE bytes within 10 s (the
# kernel forgets an unlinked file a moment after the unlink; then it is
# dropped)
freed() {
    local i
    for ((i = 0; i < 100; i++)); do
        [ "$(segbytes)" -lt "$2" ] && return 0
        sleep 0.1
    done
    fail "$1 freed nothing: segments $2 -> $(segbytes) bytes"
}
stored() { awk '$1 == "kvfs_stored_bytes" { print $2 }' "$MNT/.kvfs/stats"; }

# fill_up: data until a write fails, then directories until the index has
# no room left either; both must fail with ENOSPC.
N=0
M=0
fill_up() {
    local out
    mkdir -p "$MNT/ns/fill$N" || fail "mkdir of a fill context"
    while out=$(dd if=/dev/urandom of="$MNT/ns/fill$N/d" bs=64k count=16 conv=fsync 2>&1); do
        N=$((N + 1))
        mkdir -p "$MNT/ns/fill$N" 2>/dev/null || break
    done
    grep -q "No space left on device" <<<"$out" || [ -z "$out" ] ||
        fail "a write to a full store failed with the wrong error: $out"
    local m0=$M
    while out=$(mkdir "$MNT/ns/m$M" 2>&1); do
        M=$((M + 1))
        ((M - m0 < 20000)) || fail "20000 directories made on a full filesystem"
    done
    grep -q "No space left on device" <<<"$out" || fail "mkdir on a full store: $out (expected ENOSPC)"
    kv_assert_alive
}

mkdir -p "$MNT/ns/keep"
head -c 300000 /dev/urandom >"$T/keep"
cp "$T/keep" "$MNT/ns/keep/k"
setfattr -n user.kvfs.pin -v 1 "$MNT/ns/keep"   # the evictions below take the fill
fill_up
log "full: $N fill files, $(avail) bytes free"
pass "a full store: writes and mkdir give ENOSPC"

# until_full WHAT MAX CMD...: run CMD (with $i its round) until it fails,
# at most MAX times; a failure must be ENOSPC. Small changes may still fit
# in the index's log, so one attempt proves nothing.
until_full() {
    local what=$1 max=$2 out
    shift 2
    for ((i = 0; i < max; i++)); do
        out=$(eval "$*" 2>&1) || break
    done
    ((i < max)) || { log "$what: $max times on a full store, all fitted"; return 0; }
    grep -q "No space left on device" <<<"$out" || fail "$what on a full store: $out (expected ENOSPC)"
}
# shellcheck disable=SC2034  # V is read by the commands until_full evals
V=$(head -c 2000 /dev/zero | tr '\0' v)
until_full setxattr 5000 'setfattr -n user.x$i -v "$V" "$MNT/ns/keep"'
until_full rename 200 'mv "$MNT/ns/keep/k" "$MNT/ns/keep/k2" && mv "$MNT/ns/keep/k2" "$MNT/ns/keep/k"'
[ -e "$MNT/ns/keep/k" ] || mv "$MNT/ns/keep/k2" "$MNT/ns/keep/k" 2>/dev/null || true
pass "setxattr and rename give ENOSPC, not EIO"

a0=$(segbytes)
rm "$MNT/ns/fill0/d" || fail "rm of a file on a full store"
check '[ ! -e "$MNT/ns/fill0/d" ]' "the removed file is still there"
freed rm "$a0"
pass "rm on a full store works and frees space (segments $a0 -> $(segbytes) bytes)"

fill_up
a0=$(segbytes)
rm -rf "$MNT/ns/fill1" || fail "rm -rf of a context on a full store"
check '[ ! -e "$MNT/ns/fill1" ]' "the removed context is still there"
freed "rm -rf" "$a0"
pass "rm -rf of a context on a full store works and frees space"

fill_up
s0=$(stored)
a0=$(segbytes)
echo $((s0 - 1)) >"$MNT/.kvfs/evict" || fail ".kvfs/evict on a full store"
check '[ "$(stored)" -lt "$s0" ]' ".kvfs/evict evicted nothing"
freed .kvfs/evict "$a0"
pass ".kvfs/evict on a full store works and frees space"

fill_up
s0=$(stored)
out=$("$KVFSCTL" evict "$MNT" --to $((s0 - 1)) 2>&1) || fail "kvfsctl evict on a full store: $out"
check '[ "$(stored)" -lt "$s0" ]' "kvfsctl evict evicted nothing"
pass "kvfsctl evict on a full store works"

# room again: the reserve comes back, writes go on, nothing was damaged
rm -rf "$MNT"/ns/fill* "$MNT"/ns/m*
ok=""
for try in 1 2 3 4 5 6 7 8 9 10; do
    if dd if=/dev/urandom of="$MNT/ns/keep/after" bs=64k count=16 conv=fsync 2>/dev/null; then
        ok=$try
        break
    fi
    sleep 1
done
[ -n "$ok" ] || fail "writes still fail after the fill was removed"
check '[ "$(stat -c %s "$STORE/kvfs.reserve")" = 1048576 ]' "the reserve did not come back"
cmp "$T/keep" "$MNT/ns/keep/k" || fail "a file written before the fill differs"
kv_umount "$MNT"
"$KVFSCTL" fsck "$STORE" >"$T/fsck.out" 2>&1 || fail "fsck: $(cat "$T/fsck.out")"
kv_mount "$STORE" "$MNT"
cmp "$T/keep" "$MNT/ns/keep/k" || fail "a file written before the fill differs after a remount"
kv_umount "$MNT"
pass "the reserve is back, writes work again, fsck is clean"
