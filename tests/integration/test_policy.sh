#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016,SC2012,SC2010,SC2017
# (check() evals its condition string later; ls: the readdir of the mount is
# what is observed, and every name is ours; a/100*p: the daemon's own arithmetic)
# Cache policy, part 1 (see also test_policy_ttl.sh, test_policy_depth.sh,
# test_policy_concurrent.sh, test_policy_minfree.sh): the capacity cap under
# sequential writes (sampled continuously), LRU order, pins, ENOSPC when
# everything is pinned, manual eviction through .kvfs/evict and kvfsctl, the
# background evictor's high/low watermarks, the stats file (strict
# Prometheus text, tests/prom_check.py) checked against what was done, xattr
# errors, protection of .kvfs, and kvfsctl output.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=policy_lib.sh
. "$(dirname "$0")/policy_lib.sh"

CAP=$((8 * MiB))

py "$PROM" --self-test >/dev/null || fail "tests/prom_check.py --self-test failed"

STORE=$T/store
MNT=$T/mnt
mkdir -p "$T/src"
# new_contexts NAME...: a new 1 MiB context MNT/ns/NAME each (data kept in $T/src/NAME).
new_contexts() {
    local n
    for n in "$@"; do
        head -c $MiB /dev/urandom >"$T/src/$n"
        mkdir "$MNT/ns/$n"
        cp "$T/src/$n" "$MNT/ns/$n/f" || fail "writing $n"
    done
}

# ---------------------------------------------------------------------------
# 1. The cap holds under sequential writes; the oldest contexts go first.
# ---------------------------------------------------------------------------
kv_mount "$STORE" "$MNT" "capacity=8M,codec=none"
assert_eq "$(stat1 "$MNT" kvfs_capacity_bytes)" "$CAP" "kvfs_capacity_bytes"
grep -qx "capacity=$CAP" "$MNT/.kvfs/config" || fail "config lacks capacity=$CAP: $(cat "$MNT/.kvfs/config")"
grep -qx "context_depth=2" "$MNT/.kvfs/config" || fail "config lacks context_depth=2"

start_sampler seq "$MNT" 0.002

N=20
for i in $(seq -w 1 $N); do
    head -c $MiB /dev/urandom >"$T/src/c$i"
    mkdir -p "$MNT/ns/c$i"
    dd if="$T/src/c$i" of="$MNT/ns/c$i/f" bs=256K conv=fsync status=none ||
        fail "writing context c$i under the cap failed"
    s=$(stat1 "$MNT" kvfs_stored_bytes)
    check '[ "$s" -le $((CAP + REC)) ]' "after c$i: stored $s > cap $CAP + one chunk"
    n=$(ls "$MNT/ns" | wc -l)
    check '[ "$n" -le 8 ]' "after c$i: $n contexts of 1 MiB under an 8 MiB cap"
done
stop_sampler seq
max=$MAX samples=$SAMPLES
log "sequential: max stored $max over $samples samples"
check '[ "$samples" -ge 10 ]' "sampler read the stats only $samples times"
check '[ "$max" -le $((CAP + REC)) ]' "max stored $max > cap $CAP + one chunk ($REC)"

mapfile -t SURV < <(ls "$MNT/ns" | LC_ALL=C sort)
NS=${#SURV[@]}
log "survivors: ${SURV[*]}"
check '[ "$NS" -ge 6 ] && [ "$NS" -le 7 ]' "$NS contexts of $REC bytes survive under an 8 MiB cap (expected 6..7)"
# the survivors are the most recent ones: c(N-NS+1) .. cN
expected=$(for ((i = N - NS + 1; i <= N; i++)); do printf 'c%02d\n' "$i"; done | tr '\n' ' ' | sed 's/ $//')
assert_eq "${SURV[*]}" "$expected" "surviving contexts (LRU must evict the oldest first)"
for c in "${SURV[@]}"; do
    cmp "$T/src/$c" "$MNT/ns/$c/f" || fail "surviving context $c: data differs"
done
expect_stats "$MNT" "stats after $N sequential contexts" \
    "kvfs_contexts=$NS" "kvfs_files=$NS" \
    "kvfs_stored_bytes=$((NS * REC))" "kvfs_logical_bytes=$((NS * MiB))" \
    "kvfs_written_bytes_total=$((N * MiB))" \
    "kvfs_evictions_total{reason=\"lru\"}=$((N - NS))" \
    'kvfs_evictions_total{reason="ttl"}=0' 'kvfs_evictions_total{reason="manual"}=0' \
    "kvfs_enospc_total=0"
c=${SURV[0]}
assert_eq "$(xget "$MNT/ns/$c" user.kvfs.stored_bytes)" "$REC" "user.kvfs.stored_bytes of a context"
assert_eq "$(xget "$MNT/ns/$c" user.kvfs.logical_bytes)" "$MiB" "user.kvfs.logical_bytes of a context"
assert_eq "$(xget "$MNT/ns/$c/f" user.kvfs.stored_bytes)" "$REC" "user.kvfs.stored_bytes of a file"
assert_eq "$(xget "$MNT/ns/$c" user.kvfs.codec)" "none" "user.kvfs.codec"
pass "cap held under $N sequential 1 MiB contexts (max stored $max); oldest evicted first"

# ---------------------------------------------------------------------------
# 2. LRU order: reading the oldest context makes it the most recent.
# ---------------------------------------------------------------------------
S0=${SURV[0]} S1=${SURV[1]} S2=${SURV[2]} S3=${SURV[3]} S4=${SURV[4]}
la0=$(xget "$MNT/ns/$S0" user.kvfs.last_access)
la1=$(xget "$MNT/ns/$S1" user.kvfs.last_access)
[[ $la0 =~ ^[0-9]+\.[0-9]{9}$ ]] || fail "user.kvfs.last_access '$la0' is not seconds.nanoseconds"
check 'py -c "import sys; sys.exit(not ($la0 < $la1))"' "last_access of $S0 ($la0) not before $S1 ($la1)"
h0=$(xget "$MNT/ns/$S0" user.kvfs.hits)
sleep 0.05
cmp "$T/src/$S0" "$MNT/ns/$S0/f" || fail "reading $S0"
cat "$MNT/ns/$S0/f" >/dev/null
assert_eq "$(xget "$MNT/ns/$S0" user.kvfs.hits)" $((h0 + 2)) "user.kvfs.hits after two opens"
assert_eq "$(xget "$MNT/ns/$S0/f" user.kvfs.hits)" $((h0 + 2)) "user.kvfs.hits read on a file of the context"
la0b=$(xget "$MNT/ns/$S0" user.kvfs.last_access)
check 'py -c "import sys; sys.exit(not ($la0b > $la0))"' "reading $S0 did not advance its last_access ($la0 -> $la0b)"
# two new contexts push out the two least recently used others
new_contexts n1 n2
now=$(contexts_of "$MNT/ns")
check '[ -d "$MNT/ns/$S0" ] && [[ " $now " == *" $S0 "* ]]' "recently read $S0 was evicted (contexts: $now)"
check '[[ " $now " != *" $S1 "* ]]' "$S1 (least recently used) survived (contexts: $now)"
check '[[ " $now " != *" $S2 "* ]]' "$S2 (second least recently used) survived (contexts: $now)"
check '[[ " $now " == *" $S3 "* ]]' "$S3 was evicted before it was the LRU one (contexts: $now)"
# kvfsctl ls: most recent first
mapfile -t LS < <("$KVFSCTL" ls "$MNT" | awk 'NR > 1 { print $1 }')
assert_eq "${LS[*]:0:3}" "ns/n2 ns/n1 ns/$S0" "first three contexts of kvfsctl ls (most recent first)"
assert_eq "${#LS[@]}" "$(ls "$MNT/ns" | wc -l)" "number of contexts in kvfsctl ls"
cmp "$T/src/$S0" "$MNT/ns/$S0/f" || fail "$S0 damaged"
pass "LRU: the recently read context stays, the least recently used go"

# ---------------------------------------------------------------------------
# 3. Pins survive eviction.
# ---------------------------------------------------------------------------
"$KVFSCTL" pin "$MNT/ns/$S3" || fail "kvfsctl pin $S3"
assert_eq "$(xget "$MNT/ns/$S3" user.kvfs.pin)" 1 "user.kvfs.pin after kvfsctl pin"
check '"$KVFSCTL" ls "$MNT" | awk -v c="ns/$S3" "\$1 == c && \$NF == 1 { f=1 } END { exit !f }"' \
    "kvfsctl ls does not show $S3 as pinned: $("$KVFSCTL" ls "$MNT")"
new_contexts n3 n4
now=$(contexts_of "$MNT/ns")
check '[[ " $now " == *" $S3 "* ]]' "pinned $S3 was evicted (contexts: $now)"
check '[[ " $now " != *" $S4 "* ]]' "$S4 survived although it was the LRU unpinned one (contexts: $now)"
cmp "$T/src/$S3" "$MNT/ns/$S3/f" || fail "pinned $S3 damaged"
pass "pinned context survives eviction"

# ---------------------------------------------------------------------------
# 4. ENOSPC when everything is pinned; the mount keeps working.
# ---------------------------------------------------------------------------
mapfile -t ALL < <(ls "$MNT/ns" | LC_ALL=C sort)
for c in "${ALL[@]}"; do setfattr -n user.kvfs.pin -v 1 "$MNT/ns/$c"; done
e0=$(stat1 "$MNT" kvfs_enospc_total)
ev0=$(stat1 "$MNT" 'kvfs_evictions_total{reason="lru"}')
mkdir "$MNT/ns/x"
expect_fail "No space left on device" "writing 2 MiB with every context pinned" \
    dd if=/dev/urandom of="$MNT/ns/x/f" bs=1M count=2 conv=fsync
kv_assert_alive
e1=$(stat1 "$MNT" kvfs_enospc_total)
check '[ "$e1" -ge $((e0 + 1)) ]' "kvfs_enospc_total $e0 -> $e1 after a refused write"
assert_eq "$(stat1 "$MNT" 'kvfs_evictions_total{reason="lru"}')" "$ev0" "evictions while everything was pinned"
check '[ "$(stat1 "$MNT" kvfs_stored_bytes)" -le $((CAP + REC)) ]' "stored above the cap after ENOSPC"
for c in "${ALL[@]}"; do
    [ -d "$MNT/ns/$c" ] || fail "pinned $c vanished"
    cmp "$T/src/$c" "$MNT/ns/$c/f" || fail "pinned $c damaged by the refused write"
done
# manual eviction is refused too (x, unpinned, holds nothing after its refused write)
rm -rf "$MNT/ns/x"
expect_fail "No space left on device" "echo 0 > .kvfs/evict with everything pinned" \
    bash -c "echo 0 > '$MNT/.kvfs/evict'"
expect_fail "pinned or open" "kvfsctl evict --to 0 with everything pinned" \
    "$KVFSCTL" evict "$MNT" --to 0
assert_eq "$(stat1 "$MNT" 'kvfs_evictions_total{reason="manual"}')" 0 "manual evictions of pinned contexts"
# unpin: writes work again
for c in "${ALL[@]}"; do "$KVFSCTL" unpin "$MNT/ns/$c" || fail "kvfsctl unpin $c"; done
assert_eq "$(xget "$MNT/ns/${ALL[0]}" user.kvfs.pin)" 0 "user.kvfs.pin after kvfsctl unpin"
head -c $((2 * MiB)) /dev/urandom >"$T/src/y"
mkdir "$MNT/ns/y"
dd if="$T/src/y" of="$MNT/ns/y/f" bs=1M conv=fsync status=none || fail "write after unpinning failed"
cmp "$T/src/y" "$MNT/ns/y/f" || fail "file written after unpinning differs"
check '[ "$(stat1 "$MNT" kvfs_stored_bytes)" -le $((CAP + REC)) ]' "stored above the cap after unpinning"
pass "ENOSPC with everything pinned (enospc $e0 -> $e1); writes work after unpinning"

# ---------------------------------------------------------------------------
# 5. Manual eviction: .kvfs/evict and kvfsctl evict.
# ---------------------------------------------------------------------------
before=$(ls "$MNT/ns" | wc -l)
"$KVFSCTL" evict "$MNT" --to 3M || fail "kvfsctl evict --to 3M"
s=$(stat1 "$MNT" kvfs_stored_bytes)
check '[ "$s" -le $((3 * MiB)) ]' "stored $s after kvfsctl evict --to 3M"
after=$(ls "$MNT/ns" | wc -l)
check '[ "$after" -lt "$before" ]' "kvfsctl evict --to 3M evicted nothing ($before contexts)"
assert_eq "$(stat1 "$MNT" 'kvfs_evictions_total{reason="manual"}')" $((before - after)) "manual evictions"
check '[ -d "$MNT/ns/y" ]' "the most recent context y was evicted by evict --to 3M"
echo 1M >"$MNT/.kvfs/evict" || fail "echo 1M > .kvfs/evict"
s=$(stat1 "$MNT" kvfs_stored_bytes)
check '[ "$s" -le "$MiB" ]' "stored $s after echo 1M > .kvfs/evict"
expect_fail "Invalid argument" "writing garbage to .kvfs/evict" bash -c "echo lots > '$MNT/.kvfs/evict'"
expect_fail "" "kvfsctl evict without --to" "$KVFSCTL" evict "$MNT" 3M
pass "manual eviction ($before -> $after contexts, then <= 1 MiB)"
kv_umount "$MNT"

# ---------------------------------------------------------------------------
# 5b. The background evictor: above high% of the cap it evicts down to low%.
# ---------------------------------------------------------------------------
STORE3=$T/store3
MNT3=$T/mnt3
kv_mount "$STORE3" "$MNT3" "capacity=10M,high=80,low=50,codec=none"
if ! grep -qx "high=80" "$MNT3/.kvfs/config" || ! grep -qx "low=50" "$MNT3/.kvfs/config"; then
    fail ".kvfs/config lacks high=80 / low=50: $(cat "$MNT3/.kvfs/config")"
fi
for i in 1 2 3 4 5 6 7; do
    head -c $MiB /dev/urandom >"$T/src/w$i"
    mkdir -p "$MNT3/ns/w$i"
    cp "$T/src/w$i" "$MNT3/ns/w$i/f"
done
# 7 records: 70% of the cap, below high: nothing is evicted, even after a while
sleep 1.5
assert_eq "$(ls "$MNT3/ns" | wc -l)" 7 "contexts below the high watermark after 1.5 s"
assert_eq "$(stat1 "$MNT3" 'kvfs_evictions_total{reason="lru"}')" 0 "evictions below the high watermark"
head -c $MiB /dev/urandom >"$T/src/w8"
mkdir -p "$MNT3/ns/w8"
cp "$T/src/w8" "$MNT3/ns/w8/f"
# 8 records: just above high (80%); within ~1 s stored drops to <= 50%, i.e. 4 records
LOW=$((10 * MiB / 100 * 50))
wait_stored "$MNT3" "$LOW" 30
s=$STORED
check '[ "$s" -le "$LOW" ]' "stored $s still above low=50% ($LOW) 3 s after passing high=80%"
assert_eq "$s" $((4 * REC)) "stored after the background eviction (down to low, not further)"
assert_eq "$(ls "$MNT3/ns" | tr '\n' ' ')" "w5 w6 w7 w8 " "contexts left by the background evictor"
assert_eq "$(stat1 "$MNT3" 'kvfs_evictions_total{reason="lru"}')" 4 "background LRU evictions"
for i in 5 6 7 8; do cmp "$T/src/w$i" "$MNT3/ns/w$i/f" || fail "w$i damaged"; done
kv_umount "$MNT3"
pass "background evictor: nothing below high=80%, down to low=50% above it"

# ---------------------------------------------------------------------------
# 6. Stats against the actions taken (fresh store, no cap).
# ---------------------------------------------------------------------------
STORE2=$T/store2
MNT2=$T/mnt2
kv_mount "$STORE2" "$MNT2" "codec=lz4"
expect_stats "$MNT2" "stats of an empty mount" kvfs_contexts=0 kvfs_files=0 kvfs_stored_bytes=0 \
    kvfs_logical_bytes=0 kvfs_written_bytes_total=0 kvfs_read_bytes_total=0 kvfs_capacity_bytes=0 \
    'kvfs_evictions_total{reason="lru"}=0' kvfs_enospc_total=0
total=0 files=0
for c in a b c; do
    mkdir -p "$MNT2/ns/$c"
    for f in 1 2; do
        sz=$((100000 * f + ${#c} * 777 + files))
        head -c "$sz" /dev/urandom >"$T/src/s-$c-$f"
        cp "$T/src/s-$c-$f" "$MNT2/ns/$c/f$f"
        total=$((total + sz)) files=$((files + 1))
    done
done
mkdir -p "$MNT2/other/z"         # an empty context
expect_stats "$MNT2" "stats after writing $files files ($total bytes)" \
    "kvfs_files=$files" "kvfs_contexts=4" "kvfs_written_bytes_total=$total" \
    "kvfs_logical_bytes=$total" "kvfs_stored_bytes>0" 'kvfs_evictions_total{reason="lru"}=0'
# misses: lookups of absent contexts, each one (the kernel caches no absent
# context's name; it does cache absent names inside a context, uncounted)
m0=$(stat1 "$MNT2" kvfs_misses_total)
for i in 1 2 3 3 3; do ! stat "$MNT2/ns/absent$i" 2>/dev/null || fail "absent context exists"; done
for i in 1 2; do ! stat "$MNT2/ns/a/absent" 2>/dev/null || fail "absent file exists"; done
m1=$(stat1 "$MNT2" kvfs_misses_total)
assert_eq "$m1" $((m0 + 5)) "kvfs_misses_total after 5 lookups of absent contexts (one name 3 times) and 2 of an absent file in a context"
# hits: a lookup that finds a context (after the kernel's entry cache expired)
sleep 1.2
h0=$(stat1 "$MNT2" kvfs_hits_total)
stat "$MNT2/ns/a" >/dev/null
h1=$(stat1 "$MNT2" kvfs_hits_total)
check '[ "$h1" -ge $((h0 + 1)) ]' "kvfs_hits_total $h0 -> $h1 after a lookup of an existing context"
assert_eq "$(stat1 "$MNT2" kvfs_misses_total)" "$m1" "kvfs_misses_total after a lookup that found a context"
kv_umount "$MNT2"
# reads (after a remount, so that the page cache is cold); O_DIRECT reads reach the daemon each time
kv_mount "$STORE2" "$MNT2" "codec=lz4"
F=$MNT2/ns/b/f2
sz=$(stat -c %s "$F")
r0=$(stat1 "$MNT2" kvfs_read_bytes_total)
cmp "$T/src/s-b-2" "$F" || fail "ns/b/f2 differs after remount"
r1=$(stat1 "$MNT2" kvfs_read_bytes_total)
check '[ "$r1" -ge $((r0 + sz)) ]' "kvfs_read_bytes_total $r0 -> $r1 after reading $sz bytes"
th0=$(stat1 "$MNT2" kvfs_tier_hits_total)
tm0=$(stat1 "$MNT2" kvfs_tier_misses_total)
[ "$tm0" -ge 1 ] || fail "first read after a remount had no tier miss (kvfs_tier_misses_total $tm0)"
dd if="$F" of=/dev/null bs=1M iflag=direct status=none || fail "O_DIRECT read of $F"
th1=$(stat1 "$MNT2" kvfs_tier_hits_total)
check '[ "$th1" -gt "$th0" ]' "kvfs_tier_hits_total did not increase on a second read ($th0 -> $th1)"
r2=$(stat1 "$MNT2" kvfs_read_bytes_total)
check '[ "$r2" -ge $((r1 + sz)) ]' "kvfs_read_bytes_total $r1 -> $r2 after an O_DIRECT read of $sz bytes"
check '[ "$(stat1 "$MNT2" kvfs_tier_bytes)" -gt 0 ]' "kvfs_tier_bytes is 0 after reads"
expect_stats "$MNT2" "counters after remount" kvfs_written_bytes_total=0 "kvfs_files=$files" \
    kvfs_contexts=4 "kvfs_logical_bytes=$total"
# manual eviction of everything
"$KVFSCTL" evict "$MNT2" --to 0 || fail "kvfsctl evict --to 0"
expect_stats "$MNT2" "stats after evicting everything" kvfs_contexts=0 kvfs_files=0 \
    kvfs_stored_bytes=0 kvfs_logical_bytes=0 'kvfs_evictions_total{reason="manual"}=4' \
    'kvfs_evictions_total{reason="lru"}=0' 'kvfs_evictions_total{reason="ttl"}=0'
assert_eq "$(contexts_of "$MNT2/ns")" "" "contexts left in ns after evict --to 0"
assert_eq "$(stat1 "$MNT2" kvfs_tier_bytes)" 0 "DRAM tier bytes after every context was evicted"
check '[ -d "$MNT2/other" ]' "namespace directory removed by eviction"
# the stats file is strict Prometheus text; corrupted copies are refused
f=$(snap "$MNT2")
for bad in 's/^# TYPE kvfs_files gauge$//' 's/^\(kvfs_files .*\)$/\1\n\1/' \
           's/^# TYPE kvfs_hits_total counter$/# TYPE kvfs_hits_total gauge\n&/' \
           's/reason="lru"/reason=lru/' 's/^kvfs_stored_bytes [0-9]*$/kvfs_stored_bytes x/'; do
    sed "$bad" "$f" >"$f.bad"
    ! cmp -s "$f" "$f.bad" || fail "sed '$bad' did not change the stats copy"
    ! py "$PROM" "$f.bad" 2>/dev/null || fail "prom_check.py accepted stats corrupted by sed '$bad'"
done
head -c -1 "$f" >"$f.bad"
! py "$PROM" "$f.bad" 2>/dev/null || fail "prom_check.py accepted stats without a final newline"
for name in kvfs_logical_bytes kvfs_stored_bytes kvfs_capacity_bytes kvfs_contexts kvfs_files \
            kvfs_evictions_total kvfs_hits_total kvfs_misses_total kvfs_read_bytes_total \
            kvfs_written_bytes_total kvfs_tier_hits_total kvfs_tier_misses_total kvfs_tier_bytes \
            kvfs_enospc_total; do
    assert_eq "$(grep -c "^# HELP $name " "$f")" 1 "# HELP lines of $name"
    assert_eq "$(grep -c "^# TYPE $name " "$f")" 1 "# TYPE lines of $name"
done
pass "stats match the actions: files, contexts, bytes, hits/misses, reads, tier hits, evictions"

# ---------------------------------------------------------------------------
# 7. xattr errors.
# ---------------------------------------------------------------------------
mkdir -p "$MNT2/ns/q"
echo data >"$MNT2/ns/q/file"
Q=$MNT2/ns/q
for a in logical_bytes stored_bytes codec last_access hits; do
    expect_fail "Operation not permitted" "setting read-only user.kvfs.$a" setfattr -n "user.kvfs.$a" -v 1 "$Q"
    expect_fail "Operation not permitted" "setting read-only user.kvfs.$a on a file" \
        setfattr -n "user.kvfs.$a" -v 1 "$Q/file"
done
expect_fail "Operation not permitted" "removing user.kvfs.pin" setfattr -x user.kvfs.pin "$Q"
expect_fail "Invalid argument" "pin=7" setfattr -n user.kvfs.pin -v 7 "$Q"
expect_fail "Invalid argument" "pin=-1" setfattr -n user.kvfs.pin -v -1 "$Q"
expect_fail "Invalid argument" "pin=yes" setfattr -n user.kvfs.pin -v yes "$Q"
expect_fail "Invalid argument" "ttl=-1" setfattr -n user.kvfs.ttl -v -1 "$Q"
expect_fail "Invalid argument" "ttl=abc" setfattr -n user.kvfs.ttl -v abc "$Q"
expect_fail "Invalid argument" "ttl=5s" setfattr -n user.kvfs.ttl -v 5s "$Q"
expect_fail "Invalid argument" "ttl on a file" setfattr -n user.kvfs.ttl -v 5 "$Q/file"
expect_fail "Invalid argument" "pin on a file" setfattr -n user.kvfs.pin -v 1 "$Q/file"
expect_fail "Invalid argument" "pin on a namespace" setfattr -n user.kvfs.pin -v 1 "$MNT2/ns"
expect_fail "Invalid argument" "ttl on the root" setfattr -n user.kvfs.ttl -v 1 "$MNT2"
expect_fail "not a context" "kvfsctl pin on a file" "$KVFSCTL" pin "$Q/file"
assert_eq "$(xget "$Q" user.kvfs.pin)" 0 "pin after refused values"
assert_eq "$(xget "$Q" user.kvfs.ttl)" 0 "ttl after refused values"
setfattr -n user.kvfs.ttl -v 3600 "$Q" || fail "ttl=3600"
assert_eq "$(xget "$Q" user.kvfs.ttl)" 3600 "user.kvfs.ttl after setting 3600"
setfattr -n user.kvfs.pin -v 1 "$Q" || fail "pin=1"
assert_eq "$(xget "$Q" user.kvfs.pin)" 1 "user.kvfs.pin after setting 1"
assert_eq "$(xget "$Q/file" user.kvfs.logical_bytes)" 5 "user.kvfs.logical_bytes of a 5-byte file"
# ordinary user xattrs still work next to them; user.kvfs.* are read by name
# only and not listed (so that rsync -X / cp --preserve=xattr do not copy them)
setfattr -n user.app -v hello "$Q" || fail "setting user.app on a context"
assert_eq "$(xget "$Q" user.app)" hello "user.app on a context"
names=$(getfattr --absolute-names -d -m - "$Q" | sed -n 's/=.*//p' | LC_ALL=C sort | tr '\n' ' ')
assert_eq "$names" "user.app " "xattrs listed on a context"
pass "xattr errors: EPERM for read-only, EINVAL for bad values and non-contexts"

# ---------------------------------------------------------------------------
# 8. .kvfs is hidden and protected.
# ---------------------------------------------------------------------------
ls -a "$MNT2" | grep -qx '.kvfs' && fail ".kvfs is listed by ls -a of the root: $(ls -a "$MNT2" | tr '\n' ' ')"
find "$MNT2" -name .kvfs | grep -q . && fail "find meets .kvfs"
check '[ -d "$MNT2/.kvfs" ]' ".kvfs is not reachable by name"
assert_eq "$(ls "$MNT2/.kvfs" | LC_ALL=C sort | tr '\n' ' ')" "config evict stats " "entries of .kvfs"
expect_fail "Operation not permitted" "rmdir .kvfs" rmdir "$MNT2/.kvfs"
expect_fail "Operation not permitted|Directory not empty" "rm -rf .kvfs" rm -rf "$MNT2/.kvfs"
check '[ -f "$MNT2/.kvfs/stats" ]' "rm -rf .kvfs removed its files"
expect_fail "Operation not permitted" "mv .kvfs" mv "$MNT2/.kvfs" "$MNT2/kvfs2"
expect_fail "Operation not permitted|exists" "mv a directory onto .kvfs" mv -T "$MNT2/other" "$MNT2/.kvfs"
check '[ -d "$MNT2/other" ]' "mv onto .kvfs moved the directory"
expect_fail "File exists" "mkdir .kvfs" mkdir "$MNT2/.kvfs"
expect_fail "Operation not permitted" "creating a file in .kvfs" touch "$MNT2/.kvfs/new"
expect_fail "Operation not permitted" "mkdir in .kvfs" mkdir "$MNT2/.kvfs/dir"
expect_fail "Operation not permitted" "rm .kvfs/stats" rm -f "$MNT2/.kvfs/stats"
expect_fail "Operation not permitted" "mv .kvfs/stats" mv "$MNT2/.kvfs/stats" "$MNT2/stats"
expect_fail "Operation not permitted" "setfattr on .kvfs" setfattr -n user.x -v 1 "$MNT2/.kvfs"
expect_fail "" "writing .kvfs/stats" bash -c "echo 1 > '$MNT2/.kvfs/stats'"
expect_fail "" "reading .kvfs/evict" cat "$MNT2/.kvfs/evict"
assert_eq "$(stat -c %a "$MNT2/.kvfs/evict")" 200 "mode of .kvfs/evict"
assert_eq "$(stat -c %a "$MNT2/.kvfs/stats")" 444 "mode of .kvfs/stats"
check '[ -f "$MNT2/.kvfs/stats" ] && [ -f "$MNT2/.kvfs/config" ] && [ -d "$MNT2/.kvfs" ]' ".kvfs damaged"
f=$(snap "$MNT2")   # still valid
pass ".kvfs is hidden from readdir and cannot be removed, renamed or created in"

# ---------------------------------------------------------------------------
# 9. kvfsctl stats / ls / gc / info.
# ---------------------------------------------------------------------------
mkdir -p "$MNT2/ns2/k1" "$MNT2/ns2/k2"
head -c 300000 /dev/urandom >"$MNT2/ns2/k1/f"
sleep 0.01
head -c 200000 /dev/urandom >"$MNT2/ns2/k2/f"
out=$("$KVFSCTL" stats "$MNT2") || fail "kvfsctl stats: $out"
for label in stored capacity logical contexts files hits misses 'evicted (lru)' 'evicted (ttl)' \
             'evicted (manual)' 'refused (ENOSPC)' read written ratio; do
    grep -q "^$label  *[0-9]" <<<"$out" || fail "kvfsctl stats lacks '$label': $out"
done
assert_eq "$(awk '$1 == "contexts" { print $2 }' <<<"$out")" "$(stat1 "$MNT2" kvfs_contexts)" "contexts in kvfsctl stats"
assert_eq "$(awk '$1 == "files" { print $2 }' <<<"$out")" "$(stat1 "$MNT2" kvfs_files)" "files in kvfsctl stats"
grep -q '^evicted (manual)  *4$' <<<"$out" || fail "kvfsctl stats: evicted (manual) is not 4: $out"
out=$("$KVFSCTL" ls "$MNT2" ns2) || fail "kvfsctl ls MNT ns2: $out"
head -1 <<<"$out" | grep -q '^context .*last access.*logical.*stored.*ttl.*pin' || fail "kvfsctl ls header: $out"
assert_eq "$(awk 'NR > 1 { print $1 }' <<<"$out" | tr '\n' ' ')" "ns2/k2 ns2/k1 " "kvfsctl ls MNT ns2 (most recent first)"
assert_eq "$(awk '$1 == "ns2/k1" { print $(NF-3) }' <<<"$out")" 300000 "logical of ns2/k1 in kvfsctl ls"
out=$("$KVFSCTL" ls "$MNT2") || fail "kvfsctl ls MNT: $out"
assert_eq "$(awk 'NR > 1' <<<"$out" | wc -l)" "$(stat1 "$MNT2" kvfs_contexts)" "rows of kvfsctl ls MNT vs kvfs_contexts"
awk '$1 == "ns/q" { f = ($(NF-1) == 3600 && $NF == 1) } END { exit !f }' <<<"$out" ||
    fail "kvfsctl ls does not show ns/q with ttl 3600 and pin 1: $out"
expect_fail "" "kvfsctl stats on a plain directory" "$KVFSCTL" stats "$T"
expect_fail "in use" "kvfsctl gc on a mounted store" "$KVFSCTL" gc "$STORE2"
ctx=$(stat1 "$MNT2" kvfs_contexts)
kv_umount "$MNT2"
assert_eq "$(kv_info "$STORE2" contexts)" "$ctx" "contexts in kvfsctl info"
out=$("$KVFSCTL" gc "$STORE2") || fail "kvfsctl gc on an unmounted store: $out"
grep -qE '^reclaimed .* \([0-9]+ bytes\)$' <<<"$out" || fail "kvfsctl gc output: $out"
kv_mount "$STORE2" "$MNT2" "codec=lz4"
assert_eq "$(xget "$MNT2/ns/q" user.kvfs.pin)" 1 "pin after gc and remount"
assert_eq "$(stat1 "$MNT2" kvfs_contexts)" "$ctx" "contexts after gc and remount"
kv_umount "$MNT2"
pass "kvfsctl stats, ls, evict, pin/unpin, gc, info"
