#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016,SC2012,SC2010,SC2017
# (check() evals its condition string later; ls: the readdir of the mount is
# what is observed, and every name is ours; a/100*p: the daemon's own arithmetic)
# Cache policy, part 4: min_free. The STORE lives on a 64 MiB tmpfs; with
# min_free=32M (and then min_free=50%) writing far more than the tmpfs holds
# must evict least recently used contexts instead of failing, and the free
# space of the tmpfs must stay near the floor (within one chunk and a little
# metadata) the whole time, as sampled continuously.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=policy_lib.sh
. "$(dirname "$0")/policy_lib.sh"

FLOOR=$((32 * MiB))
# Allowed dip below the floor: one chunk record in flight, plus metadata that
# is written after a record was admitted (SQLite WAL, page rounding of the
# segment files and of punched holes).
SLACK=$((REC + 2 * MiB))

FS=$T/fs
kv_small_fs "$FS" 64m
STORE=$FS/store
MNT=$T/mnt
mkdir -p "$T/src"
avail() { df -B1 --output=avail "$FS" | tail -1 | tr -d ' '; }

# write_round TAG COUNT SIZE_MIB: COUNT contexts ns/TAG-i, sampled; checks the floor.
write_round() {
    local tag=$1 count=$2 mib=$3 i lo mx n failed=""
    start_sampler "$tag" "$MNT" 0 "$FS"
    for ((i = 1; i <= count; i++)); do
        head -c $((mib * MiB)) /dev/urandom >"$T/src/$tag-$i"
        mkdir -p "$MNT/ns/$tag-$i"
        if ! out=$(dd if="$T/src/$tag-$i" of="$MNT/ns/$tag-$i/f" bs=1M conv=fsync status=none 2>&1); then
            failed="$tag-$i: $out"
            break
        fi
    done
    stop_sampler "$tag"
    lo=$MINFREE mx=$MAX n=$SAMPLES
    log "$tag: min free $lo (floor $FLOOR), max stored $mx, $n samples"
    [ -z "$failed" ] || fail "a write under min_free failed instead of evicting: $failed"
    kv_assert_alive
    check '[ "$n" -ge 10 ]' "sampler took only $n samples"
    check '[ "$lo" -ge $((FLOOR - SLACK)) ]' \
        "free space of the store's filesystem fell to $lo, more than $SLACK below the floor $FLOOR"
    # the most recent contexts are there and intact
    for ((i = count; i > count - 3; i--)); do
        cmp "$T/src/$tag-$i" "$MNT/ns/$tag-$i/f" || fail "recent context $tag-$i damaged or evicted"
    done
}

# ---------------------------------------------------------------------------
# 1. min_free=32M: 20 x 4 MiB = 80 MiB into a 64 MiB tmpfs.
# ---------------------------------------------------------------------------
kv_mount "$STORE" "$MNT" "codec=none,min_free=32M"
grep -qx "min_free=$FLOOR" "$MNT/.kvfs/config" || fail ".kvfs/config lacks min_free=$FLOOR: $(cat "$MNT/.kvfs/config")"
write_round a 20 4
ev=$(stat1 "$MNT" 'kvfs_evictions_total{reason="lru"}')
n=$(ls "$MNT/ns" | wc -l)
check '[ "$ev" -ge 10 ]' "only $ev LRU evictions after writing 80 MiB with ~32 MiB usable"
assert_eq $((n + ev)) 20 "contexts left + evicted"
# survivors are the most recent ones
assert_eq "$(ls "$MNT/ns" | LC_ALL=C sort -t- -k2n | tr '\n' ' ')" \
    "$(for ((i = 20 - n + 1; i <= 20; i++)); do printf 'a-%d ' "$i"; done)" "surviving contexts (oldest evicted first)"
expect_stats "$MNT" "stats under min_free" kvfs_capacity_bytes=0 kvfs_enospc_total=0 \
    "kvfs_stored_bytes=$((n * 4 * REC))" "kvfs_written_bytes_total=$((80 * MiB))"
check '[ "$(avail)" -ge $((FLOOR - SLACK)) ]' "free space $(avail) after the writes"
pass "min_free=32M: 80 MiB written into 64 MiB by evicting $ev contexts"

# ---------------------------------------------------------------------------
# 2. min_free=50% (of 64 MiB = 32 MiB) after a remount; more writes.
# ---------------------------------------------------------------------------
kv_remount "$STORE" "$MNT" "codec=none,min_free=50%"
grep -qx "min_free=50%" "$MNT/.kvfs/config" || fail ".kvfs/config lacks min_free=50%"
n0=$(ls "$MNT/ns" | wc -l)
# 11 contexts: the first may fit in the room left above the floor at the
# remount; each of the others makes room by evicting one.
write_round b 11 4
ev=$(stat1 "$MNT" 'kvfs_evictions_total{reason="lru"}')
n=$(ls "$MNT/ns" | wc -l)
assert_eq $((n0 + 11 - ev)) "$n" "contexts before + written - evicted"
expect_stats "$MNT" "stats under min_free=50%" kvfs_enospc_total=0 'kvfs_evictions_total{reason="lru"}>=10'
pass "min_free=50%: 44 MiB more written by evicting $ev contexts"

# ---------------------------------------------------------------------------
# 3. min_free and capacity together: the tighter one (capacity=8M) holds.
# ---------------------------------------------------------------------------
kv_remount "$STORE" "$MNT" "codec=none,min_free=32M,capacity=8M"
# the store holds far more than 8M: the background evictor brings it down
# to the low watermark (90%), not further than one context below it
LOW=$((8 * MiB / 100 * 90))
wait_stored "$MNT" "$LOW" 30
s=$STORED
check '[ "$s" -le "$LOW" ]' "stored $s still above 90% of capacity=8M 3 s after mounting"
check '[ "$s" -gt $((LOW - 4 * REC)) ]' "the evictor went down to $s, more than one context below the low watermark $LOW"
write_round c 4 2
check '[ "$(stat1 "$MNT" kvfs_stored_bytes)" -le $((8 * MiB)) ]' "stored above capacity=8M with min_free=32M"
kv_umount "$MNT"
pass "capacity=8M is honoured together with min_free=32M"

# ---------------------------------------------------------------------------
# 4. Without min_free the same tmpfs fills up: the floor above was the policy's doing.
# ---------------------------------------------------------------------------
kv_mount "$STORE" "$MNT" "codec=none"
full=""
for ((i = 1; i <= 20; i++)); do
    mkdir -p "$MNT/ns/d-$i"
    if ! dd if=/dev/urandom of="$MNT/ns/d-$i/f" bs=1M count=4 conv=fsync status=none 2>/dev/null; then
        full=$i
        break
    fi
done
[ -n "$full" ] || fail "80 MiB fit into a 64 MiB tmpfs without min_free"
kv_umount "$MNT"
pass "without min_free the tmpfs fills up (at context $full)"
