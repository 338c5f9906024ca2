#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016,SC2012,SC2010,SC2017
# (check() evals its condition string later; ls: the readdir of the mount is
# what is observed, and every name is ours; a/100*p: the daemon's own arithmetic)
# Cache policy, part 2: TTLs (user.kvfs.ttl and the ttl= option), and the
# policy state (pin, ttl, last_access, hits) kept across unmount + remount
# and across a crash (batched saves), with the LRU order after a remount.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=policy_lib.sh
. "$(dirname "$0")/policy_lib.sh"

mkdir -p "$T/src"

# ---------------------------------------------------------------------------
# 1. TTL through user.kvfs.ttl (no default ttl).
# ---------------------------------------------------------------------------
STORE=$T/store
MNT=$T/mnt
kv_mount "$STORE" "$MNT" "codec=none"
for c in a b c d; do mkctx "$MNT/ns/$c" 50000; done
assert_eq "$(xget "$MNT/ns/a" user.kvfs.ttl)" 0 "effective ttl without ttl= option"
t0=$(now)
setfattr -n user.kvfs.ttl -v 1 "$MNT/ns/a"
setfattr -n user.kvfs.ttl -v 0 "$MNT/ns/b"
setfattr -n user.kvfs.ttl -v 1 "$MNT/ns/c"
setfattr -n user.kvfs.pin -v 1 "$MNT/ns/c"
assert_eq "$(xget "$MNT/ns/a" user.kvfs.ttl)" 1 "user.kvfs.ttl after setting 1"
wait_gone "$MNT/ns" a 4
log "ns/a (ttl 1 s) gone after $(elapsed "$t0") s"
! stat "$MNT/ns/a" 2>/dev/null || fail "expired ns/a can still be looked up"
! cat "$MNT/ns/a/f" 2>/dev/null || fail "a file of expired ns/a can still be read"
for c in b c d; do
    listed "$MNT/ns" "$c" || fail "ns/$c expired although it has no ttl / ttl 0 / a pin"
    cmp "$(srcof "$MNT/ns/$c")" "$MNT/ns/$c/f" || fail "ns/$c damaged"
done
expect_stats "$MNT" "after one TTL expiry" 'kvfs_evictions_total{reason="ttl"}=1' \
    'kvfs_evictions_total{reason="lru"}=0' 'kvfs_evictions_total{reason="manual"}=0' \
    kvfs_contexts=3 kvfs_files=3 "kvfs_stored_bytes=$((3 * (50000 + 64)))"
# unpinning c, whose ttl has long passed, lets it expire
setfattr -n user.kvfs.pin -v 0 "$MNT/ns/c"
wait_gone "$MNT/ns" c 3
if ! listed "$MNT/ns" b || ! listed "$MNT/ns" d; then fail "b or d went with c"; fi
assert_eq "$(stat1 "$MNT" 'kvfs_evictions_total{reason="ttl"}')" 2 "TTL evictions after unpinning c"
# a ttl set on a context that was accessed long ago expires it at once
sleep 1.1
setfattr -n user.kvfs.ttl -v 1 "$MNT/ns/d"
wait_gone "$MNT/ns" d 3
listed "$MNT/ns" b || fail "ns/b (ttl 0) expired"
kv_umount "$MNT"
pass "user.kvfs.ttl: expired contexts disappear; ttl 0, pins and other contexts stay"

# ---------------------------------------------------------------------------
# 2. The ttl= mount option; access keeps a context alive.
# ---------------------------------------------------------------------------
STORE2=$T/store2
MNT2=$T/mnt2
kv_mount "$STORE2" "$MNT2" "codec=none,ttl=2"
grep -qx "ttl=2" "$MNT2/.kvfs/config" || fail ".kvfs/config lacks ttl=2"
t0=$(now)
for c in p q r s; do mkctx "$MNT2/ns/$c" 30000; done
assert_eq "$(xget "$MNT2/ns/p" user.kvfs.ttl)" 2 "effective ttl from the ttl= option"
setfattr -n user.kvfs.ttl -v 0 "$MNT2/ns/q"
assert_eq "$(xget "$MNT2/ns/q" user.kvfs.ttl)" 0 "ttl 0 overrides the ttl= option"
setfattr -n user.kvfs.pin -v 1 "$MNT2/ns/r"
setfattr -n user.kvfs.ttl -v 3600 "$MNT2/ns/t" 2>/dev/null && fail "setting ttl on an absent context succeeded"
gone=""
for ((i = 0; i < 45; i++)); do          # 4.5 s; s is read every 0.1 s
    cat "$MNT2/ns/s/f" >/dev/null || fail "reading ns/s/f (kept alive by reads) failed after $(elapsed "$t0") s"
    if [ -z "$gone" ] && ! listed "$MNT2/ns" p; then gone=$(elapsed "$t0"); fi
    sleep 0.1
done
[ -n "$gone" ] || fail "ns/p (ttl=2 option, never read) still there after $(elapsed "$t0") s"
log "ns/p gone after $gone s"
for c in q r s; do
    listed "$MNT2/ns" "$c" || fail "ns/$c expired (ttl 0 / pinned / read every 0.1 s)"
    cmp "$(srcof "$MNT2/ns/$c")" "$MNT2/ns/$c/f" || fail "ns/$c damaged"
done
expect_stats "$MNT2" "after ttl= expiry" 'kvfs_evictions_total{reason="ttl"}=1' kvfs_contexts=3
kv_umount "$MNT2"
pass "ttl= option: unread context expired after $gone s; ttl 0, pinned and read ones stay"

# ---------------------------------------------------------------------------
# 3. State across unmount + remount; LRU order after a remount.
# ---------------------------------------------------------------------------
STORE3=$T/store3
MNT3=$T/mnt3
kv_mount "$STORE3" "$MNT3" "codec=none"
for k in k1 k2 k3 k4 k5; do mkctx "$MNT3/ns/$k" 100000; sleep 0.02; done
setfattr -n user.kvfs.pin -v 1 "$MNT3/ns/k4"
setfattr -n user.kvfs.ttl -v 3600 "$MNT3/ns/k3"
cat "$MNT3/ns/k1/f" "$MNT3/ns/k1/f" >/dev/null     # k1: most recent, 3 opens in all
declare -A LA HITS PIN TTL
for k in k1 k2 k3 k4; do
    LA[$k]=$(xget "$MNT3/ns/$k" user.kvfs.last_access)
    HITS[$k]=$(xget "$MNT3/ns/$k" user.kvfs.hits)
    PIN[$k]=$(xget "$MNT3/ns/$k" user.kvfs.pin)
    TTL[$k]=$(xget "$MNT3/ns/$k" user.kvfs.ttl)
done
assert_eq "${HITS[k1]}" 3 "hits of k1 (created + 2 reads)"
assert_eq "${HITS[k2]}" 1 "hits of k2 (created)"
setfattr -n user.kvfs.ttl -v 3 "$MNT3/ns/k5"
t5=$(now)
kv_umount "$MNT3"       # right after the reads: the unmount itself must save them
kv_mount "$STORE3" "$MNT3" "codec=none"
for k in k1 k2 k3 k4; do
    assert_eq "$(xget "$MNT3/ns/$k" user.kvfs.last_access)" "${LA[$k]}" "last_access of $k after remount"
    assert_eq "$(xget "$MNT3/ns/$k" user.kvfs.hits)" "${HITS[$k]}" "hits of $k after remount"
    assert_eq "$(xget "$MNT3/ns/$k" user.kvfs.pin)" "${PIN[$k]}" "pin of $k after remount"
    assert_eq "$(xget "$MNT3/ns/$k" user.kvfs.ttl)" "${TTL[$k]}" "ttl of $k after remount"
done
assert_eq "${PIN[k4]} ${TTL[k3]}" "1 3600" "pin of k4 and ttl of k3 before the remount"
# k5's ttl (3 s) came back with the store and is enforced by the new mount
wait_gone "$MNT3/ns" k5 6
log "k5 (ttl 3 s, set before the remount) gone $(elapsed "$t5") s after its ttl was set"
assert_eq "$(stat1 "$MNT3" 'kvfs_evictions_total{reason="ttl"}')" 1 "TTL evictions after remount"
# LRU after the remount: k2 (oldest) first, then k3, then k1; k4 is pinned
mapfile -t LS < <("$KVFSCTL" ls "$MNT3" | awk 'NR > 1 { print $1 }')
assert_eq "${LS[*]}" "ns/k1 ns/k4 ns/k3 ns/k2" "kvfsctl ls after remount (most recent first)"
s=$(stat1 "$MNT3" kvfs_stored_bytes)
"$KVFSCTL" evict "$MNT3" --to $((s - 1)) || fail "kvfsctl evict --to $((s - 1))"
assert_eq "$(ls "$MNT3/ns" | tr '\n' ' ')" "k1 k3 k4 " "contexts after evicting one (LRU k2 must go)"
"$KVFSCTL" evict "$MNT3" --to $((s - 100064 - 1)) || fail "kvfsctl evict (second)"
assert_eq "$(ls "$MNT3/ns" | tr '\n' ' ')" "k1 k4 " "contexts after evicting two (k3 must go next)"
expect_fail "pinned or open" "evicting to 0 with k4 pinned" "$KVFSCTL" evict "$MNT3" --to 0
assert_eq "$(ls "$MNT3/ns" | tr '\n' ' ')" "k4 " "contexts after evict --to 0 (only the pinned k4)"
cmp "$(srcof "$MNT3/ns/k4")" "$MNT3/ns/k4/f" || fail "pinned k4 damaged"
kv_umount "$MNT3"
pass "pin, ttl, last_access, hits survive a remount; LRU order too"

# ---------------------------------------------------------------------------
# 4. After a crash: state is saved in batches (about every second).
# ---------------------------------------------------------------------------
kv_mount "$STORE3" "$MNT3" "codec=none"
h0=$(xget "$MNT3/ns/k4" user.kvfs.hits)
cat "$MNT3/ns/k4/f" >/dev/null
cat "$MNT3/ns/k4/f" >/dev/null
la=$(xget "$MNT3/ns/k4" user.kvfs.last_access)
hits=$(xget "$MNT3/ns/k4" user.kvfs.hits)
assert_eq "$hits" $((h0 + 2)) "hits of k4 after two more reads"
sleep 2.5                       # at least two batches
pid=${KV_PID[$MNT3]}
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
unset "KV_PID[$MNT3]"
fusermount3 -u "$MNT3" 2>/dev/null || fusermount3 -uz "$MNT3"
kv_mount "$STORE3" "$MNT3" "codec=none"
assert_eq "$(xget "$MNT3/ns/k4" user.kvfs.last_access)" "$la" "last_access of k4 after kill -9 and remount"
assert_eq "$(xget "$MNT3/ns/k4" user.kvfs.hits)" "$hits" "hits of k4 after kill -9 and remount"
assert_eq "$(xget "$MNT3/ns/k4" user.kvfs.pin)" 1 "pin of k4 after kill -9 and remount"
kv_umount "$MNT3"
pass "last_access and hits saved in batches survive kill -9"

# ---------------------------------------------------------------------------
# 5. Very long TTLs mean "practically never": a context with one stays
#    visible (or the value is refused), it does not vanish at once.
# ---------------------------------------------------------------------------
STORE7=$T/store7
MNT7=$T/mnt7
kv_mount "$STORE7" "$MNT7" "codec=none"
bad=()    # failures of this section, reported together at its end
for c in big1 big2; do mkctx "$MNT7/ns/$c" 1000; done
for v in 9300000000 9223372036854775807; do
    c=big1
    [ "$v" = 9300000000 ] || c=big2
    if out=$(setfattr -n user.kvfs.ttl -v "$v" "$MNT7/ns/$c" 2>&1); then
        sleep 1.2                 # the kernel's cached entry times out: a real lookup
        if ! stat "$MNT7/ns/$c" >/dev/null 2>&1; then
            bad+=("ns/$c vanished (lookup ENOENT) at once after setting user.kvfs.ttl=$v (~$((v / 31557600)) years)")
        elif ! cmp -s "$(srcof "$MNT7/ns/$c")" "$MNT7/ns/$c/f"; then
            bad+=("ns/$c unreadable after user.kvfs.ttl=$v")
        fi
    else
        grep -q "Invalid argument" <<<"$out" || fail "user.kvfs.ttl=$v refused with an unexpected error: $out"
    fi
done
e=$(stat1 "$MNT7" 'kvfs_evictions_total{reason="ttl"}')
[ "$e" = 0 ] || bad+=("$e TTL evictions with very long TTLs")
kv_umount "$MNT7"
# the same as the mount's default
mkdir -p "$MNT7"
if out=$(timeout 15 "$KVFS" -o codec=none,ttl=9300000000 "$STORE7" "$MNT7" 2>&1); then
    kv_adopt "$MNT7"
    mkdir -p "$MNT7/ns/big3"
    echo data >"$MNT7/ns/big3/f"
    sleep 1.2
    stat "$MNT7/ns/big3" >/dev/null 2>&1 ||
        bad+=("with the mount option ttl=9300000000 a new context vanished (lookup ENOENT) at once")
    kv_umount "$MNT7"
else
    grep -qi "ttl" <<<"$out" || fail "ttl=9300000000 refused without naming ttl: $out"
fi
[ ${#bad[@]} -eq 0 ] || fail "$(printf '%s; ' "${bad[@]}")"
pass "very long TTLs do not expire contexts at once"
