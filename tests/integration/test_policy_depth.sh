#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016,SC2012,SC2010,SC2017
# (check() evals its condition string later; ls: the readdir of the mount is
# what is observed, and every name is ours; a/100*p: the daemon's own arithmetic)
# Cache policy, part 5: what a context is. context_depth=0 (every regular
# file is its own context), the store's context_depth (another one refused,
# kvfsctl context-depth), and directories renamed to or away from the
# context depth.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=policy_lib.sh
. "$(dirname "$0")/policy_lib.sh"

mkdir -p "$T/src"

# ---------------------------------------------------------------------------
# 1. context_depth=0: every regular file is its own context.
# ---------------------------------------------------------------------------
STORE4=$T/store4
MNT4=$T/mnt4
kv_mount "$STORE4" "$MNT4" "codec=none,capacity=4M,context_depth=0"
grep -qx "context_depth=0" "$MNT4/.kvfs/config" || fail ".kvfs/config lacks context_depth=0"
mkdir -p "$MNT4/d/e"
FILES=(f1 f2 d/g1 d/g2 d/e/h1 d/e/h2 d/g3 f3)
for f in "${FILES[@]}"; do
    head -c $MiB /dev/urandom >"$T/src/z-${f//\//_}"
    cp "$T/src/z-${f//\//_}" "$MNT4/$f" || fail "writing $f"
    s=$(stat1 "$MNT4" kvfs_stored_bytes)
    check '[ "$s" -le $((4 * MiB + REC)) ]' "depth 0: stored $s after $f"
done
left=$(cd "$MNT4" && find . -path ./.kvfs -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort | tr '\n' ' ')
assert_eq "$left" "d/e/h2 d/g3 f3 " "files left under a 4 MiB cap (the 3 most recent)"
check '[ -d "$MNT4/d/e" ]' "directories were evicted with their files"
for f in d/e/h2 d/g3 f3; do cmp "$T/src/z-${f//\//_}" "$MNT4/$f" || fail "depth 0: $f damaged"; done
expect_stats "$MNT4" "depth 0 after 8 files" kvfs_contexts=3 kvfs_files=3 \
    "kvfs_stored_bytes=$((3 * REC))" 'kvfs_evictions_total{reason="lru"}=5'
assert_eq "$(xget "$MNT4/f3" user.kvfs.stored_bytes)" "$REC" "user.kvfs.stored_bytes of a file context"
assert_eq "$(xget "$MNT4/f3" user.kvfs.ttl)" 0 "user.kvfs.ttl of a file context"
expect_fail "Invalid argument" "ttl on a directory with context_depth=0" setfattr -n user.kvfs.ttl -v 1 "$MNT4/d"
expect_fail "Invalid argument" "pin on a directory with context_depth=0" setfattr -n user.kvfs.pin -v 1 "$MNT4/d"
expect_fail "context_depth=0" "kvfsctl ls with context_depth=0" "$KVFSCTL" ls "$MNT4"
# pin a file; the next writes evict the other ones
setfattr -n user.kvfs.pin -v 1 "$MNT4/d/e/h2" || fail "pin on a file with context_depth=0"
for f in f4 f5; do
    head -c $MiB /dev/urandom >"$T/src/z-$f"
    cp "$T/src/z-$f" "$MNT4/$f" || fail "writing $f"
done
left=$(cd "$MNT4" && find . -path ./.kvfs -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort | tr '\n' ' ')
assert_eq "$left" "d/e/h2 f4 f5 " "files left after two more (pinned d/e/h2 must stay)"
# ttl on a file
setfattr -n user.kvfs.ttl -v 1 "$MNT4/f4" || fail "ttl on a file with context_depth=0"
wait_gone "$MNT4" f4 4
[ -f "$MNT4/f5" ] || fail "f5 went with f4"
assert_eq "$(stat1 "$MNT4" 'kvfs_evictions_total{reason="ttl"}')" 1 "depth 0: TTL evictions"
# hits count lookups that found a context: a directory is not one here
sleep 1.2                    # let the kernel forget its cached entries
h0=$(stat1 "$MNT4" kvfs_hits_total)
stat "$MNT4/d" >/dev/null
h1=$(stat1 "$MNT4" kvfs_hits_total)
soft_eq "$h1" "$h0" "kvfs_hits_total after looking up a directory (not a context with context_depth=0)"
stat "$MNT4/f5" >/dev/null
h2=$(stat1 "$MNT4" kvfs_hits_total)
soft_eq "$h2" $((h1 + 1)) "kvfs_hits_total after looking up a file context"
kv_umount "$MNT4"
soft_pass "context_depth=0: files evicted one by one, pins and ttls on files"

# ---------------------------------------------------------------------------
# 2. The context depth is the store's: a mount at another one is refused
#    (it used to rescan the contexts and drop every pin and TTL, issue 12),
#    a mount without the option takes the store's, and kvfsctl
#    context-depth changes it, carrying pins and TTLs over.
# ---------------------------------------------------------------------------
STORE5=$T/store5
MNT5=$T/mnt5
kv_mount "$STORE5" "$MNT5" "codec=none"
for c in ns1/a ns1/b ns2/c; do mkctx "$MNT5/$c" 100000; done
assert_eq "$(stat1 "$MNT5" kvfs_contexts)" 3 "contexts at depth 2"
setfattr -n user.kvfs.pin -v 1 "$MNT5/ns1/a"
setfattr -n user.kvfs.ttl -v 1000 "$MNT5/ns2/c"
kv_umount "$MNT5"
kv_try "$STORE5" "$MNT5" -o codec=none,context_depth=1
check '[ "$KV_TRY_RC" -ne 0 ]' "a mount with context_depth=1 of a depth-2 store was not refused"
grep -q "context_depth=2" <<<"$KV_TRY_OUT" || fail "the refusal does not name the store's depth: $KV_TRY_OUT"
grep -q "kvfsctl context-depth" <<<"$KV_TRY_OUT" || fail "the refusal does not say how to change it: $KV_TRY_OUT"
kv_mount "$STORE5" "$MNT5" "codec=none"
grep -qx "context_depth=2" "$MNT5/.kvfs/config" || fail "a mount without the option is not at the store's depth 2"
assert_eq "$(xget "$MNT5/ns1/a" user.kvfs.pin)" 1 "pin of ns1/a after a refused mount at another depth"
assert_eq "$(xget "$MNT5/ns2/c" user.kvfs.ttl)" 1000 "ttl of ns2/c after a refused mount at another depth"
kv_umount "$MNT5"
assert_eq "$("$KVFSCTL" context-depth "$STORE5")" "context_depth=2" "kvfsctl context-depth STORE"
out=$("$KVFSCTL" context-depth "$STORE5" 1) || fail "kvfsctl context-depth STORE 1: $out"
grep -qx "/ns1: pin" <<<"$out" || fail "context-depth 1 does not say that ns1 takes ns1/a's pin: $out"
grep -qx "/ns2: ttl 1000" <<<"$out" || fail "context-depth 1 does not say that ns2 takes ns2/c's ttl: $out"
kv_mount "$STORE5" "$MNT5" "codec=none"
grep -qx "context_depth=1" "$MNT5/.kvfs/config" || fail "the store's depth is not 1 after kvfsctl context-depth"
assert_eq "$(xget "$MNT5/ns1" user.kvfs.logical_bytes)" 200000 "logical_bytes of ns1, a context at depth 1"
assert_eq "$(xget "$MNT5/ns1" user.kvfs.pin)" 1 "pin of ns1 (carried from ns1/a)"
assert_eq "$(xget "$MNT5/ns2" user.kvfs.ttl)" 1000 "ttl of ns2 (carried from ns2/c)"
expect_fail "Invalid argument" "pin on ns1/a, no context at depth 1" setfattr -n user.kvfs.pin -v 1 "$MNT5/ns1/a"
soft_eq "$(stat1 "$MNT5" kvfs_contexts)" 2 "contexts at depth 1 (ns1, ns2)"
# evicting one context removes a whole depth-1 context, not a part of one:
# ns2 (ns1 is pinned)
s=$(stat1 "$MNT5" kvfs_stored_bytes)
"$KVFSCTL" evict "$MNT5" --to $((s - 1)) || fail "kvfsctl evict at depth 1"
left=$(cd "$MNT5" && find . -path ./.kvfs -prune -o -print | LC_ALL=C sort | tr '\n' ' ')
soft_eq "$left" ". ./ns1 ./ns1/a ./ns1/a/f ./ns1/b ./ns1/b/f " "tree after evicting one depth-1 context (all of ns2 gone)"
kv_umount "$MNT5"
# deeper: ns1's pin goes to both contexts in it; at depth 3 nothing is a
# directory, so the pins have nowhere to go, and that is said
"$KVFSCTL" context-depth "$STORE5" 2 >"$T/cd2.out" || fail "kvfsctl context-depth STORE 2: $(cat "$T/cd2.out")"
rc=0; out=$("$KVFSCTL" context-depth "$STORE5" 3) || rc=$?
assert_eq "$rc" 1 "exit status of a depth change that drops pins ($out)"
grep -q "/ns1/a: pin not carried" <<<"$out" || fail "context-depth 3 does not report the pin it drops: $out"
"$KVFSCTL" context-depth "$STORE5" 2 >/dev/null || true
kv_mount "$STORE5" "$MNT5" "codec=none"
grep -qx "context_depth=2" "$MNT5/.kvfs/config" || fail "the store's depth is not 2 again"
kv_umount "$MNT5"
soft_pass "context_depth is the store's: another one is refused; kvfsctl context-depth moves pins and TTLs"

# ---------------------------------------------------------------------------
# 3. Directories renamed to or away from the context depth (depth 2).
# ---------------------------------------------------------------------------
STORE6=$T/store6
MNT6=$T/mnt6
kv_mount "$STORE6" "$MNT6" "codec=none"
# staged one level deeper, then published at the context depth
mkdir -p "$MNT6/ns/staging/x" "$MNT6/ns/a"
head -c 100000 /dev/urandom >"$MNT6/ns/staging/x/f"
head -c 100000 /dev/urandom >"$MNT6/ns/a/f"
mv "$MNT6/ns/staging/x" "$MNT6/ns/x"
rmdir "$MNT6/ns/staging"
soft_eq "$(stat1 "$MNT6" kvfs_contexts)" 2 "contexts after publishing ns/x by rename (ns/a, ns/x)"
# nothing is pinned or open: evicting everything must work
out=$("$KVFSCTL" evict "$MNT6" --to 0 2>&1) ||
    soft_eq "kvfsctl evict --to 0 failed: $out" "success" "evicting everything after a rename to the context depth"
soft_eq "$(find "$MNT6" -path "$MNT6/.kvfs" -prune -o -print | sed "s|^$MNT6||" | LC_ALL=C sort | tr '\n' ' ')" \
    " /ns " "tree after evict --to 0 (the renamed context must go too)"
soft_eq "$(stat1 "$MNT6" kvfs_stored_bytes)" 0 "stored after evict --to 0"
# a context moved below another one is a part of that one, no longer a context
rm -rf "$MNT6/ns"
mkdir -p "$MNT6/ns/a" "$MNT6/ns/b"
head -c 100000 /dev/urandom >"$MNT6/ns/a/f"
head -c 100000 /dev/urandom >"$MNT6/ns/b/f"
mv "$MNT6/ns/a" "$MNT6/ns/b/a"
soft_eq "$(stat1 "$MNT6" kvfs_contexts)" 1 "contexts after moving ns/a into ns/b"
expect_fail "Invalid argument" "pin on ns/b/a (no longer a context)" setfattr -n user.kvfs.pin -v 1 "$MNT6/ns/b/a"
s=$(stat1 "$MNT6" kvfs_stored_bytes)
"$KVFSCTL" evict "$MNT6" --to $((s - 1)) || fail "kvfsctl evict --to $((s - 1))"
soft_eq "$(find "$MNT6" -path "$MNT6/.kvfs" -prune -o -print | sed "s|^$MNT6||" | LC_ALL=C sort | tr '\n' ' ')" \
    " /ns " "tree after evicting one context (ns/b is the only one: all of it must go, not ns/b/a alone)"
kv_umount "$MNT6"
soft_pass "renames to and from the context depth"
soft_done
