#!/usr/bin/env bash
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

if [ "$(id -u)" -ne 0 ]; then
    log "SKIP: needs root to mount a tmpfs"
    exit 77
fi
PROM=$KV_REPO/tests/prom_check.py
PY=$(python3 -c 'import sys; print(sys.executable)')
py() { "$PY" -S -B "$@"; }
MiB=1048576
REC=$((MiB + 64))
FLOOR=$((32 * MiB))
# Allowed dip below the floor: one chunk record in flight, plus metadata that
# is written after a record was admitted (SQLite WAL, page rounding of the
# segment files and of punched holes).
SLACK=$((REC + 2 * MiB))

stat1() {
    local f out
    f=$(mktemp "$T/stats.XXXXXX")
    cat "$1/.kvfs/stats" >"$f" || fail "cannot read $1/.kvfs/stats"
    out=$(py "$PROM" "$f" --get "$2" 2>&1) || fail "$1/.kvfs/stats: $out"
    printf '%s\n' "$out"
}
expect_stats() {
    local mnt=$1 msg=$2 f out a
    shift 2
    local -a args=()
    for a in "$@"; do args+=(--expect "$a"); done
    f=$(mktemp "$T/stats.XXXXXX")
    cat "$mnt/.kvfs/stats" >"$f" || fail "cannot read $mnt/.kvfs/stats"
    out=$(py "$PROM" "$f" "${args[@]}" 2>&1) || fail "$msg: $out"
}

cat >"$T/sampler.py" <<'EOF'
# sampler.py FSDIR STATS OUT STOP: until STOP exists, sample the free space of
# FSDIR's filesystem and the stats (parsed strictly); write
# "min_avail max_stored samples" to OUT.
import os, sys
sys.path.insert(0, os.environ["PROM_DIR"])
import prom_check
fsdir, stats, out, stop = sys.argv[1:5]
lo, mx, n = None, 0, 0
while True:
    last = os.path.exists(stop)
    sv = os.statvfs(fsdir)
    avail = sv.f_bavail * sv.f_frsize
    lo = avail if lo is None else min(lo, avail)
    with open(stats) as f:
        series, _ = prom_check.parse(f.read())
    mx = max(mx, int(series[("kvfs_stored_bytes", ())]))
    n += 1
    if last:
        break
with open(out, "w") as f:
    f.write("%d %d %d\n" % (lo, mx, n))
EOF
export PROM_DIR=$KV_REPO/tests

FS=$T/fs
mkdir "$FS"
mount -t tmpfs -o size=64m tmpfs "$FS"
KV_EXTRA_MOUNTS+=("$FS")
STORE=$FS/store
MNT=$T/mnt
mkdir -p "$T/src"
avail() { df -B1 --output=avail "$FS" | tail -1 | tr -d ' '; }

# write_round TAG COUNT SIZE_MIB: COUNT contexts ns/TAG-i, sampled; checks the floor.
write_round() {
    local tag=$1 count=$2 mib=$3 i lo mx n failed=""
    rm -f "$T/stop-$tag"
    py "$T/sampler.py" "$FS" "$MNT/.kvfs/stats" "$T/out-$tag" "$T/stop-$tag" 2>"$T/sampler-$tag.err" &
    local sp=$!
    for ((i = 1; i <= count; i++)); do
        head -c $((mib * MiB)) /dev/urandom >"$T/src/$tag-$i"
        mkdir -p "$MNT/ns/$tag-$i"
        if ! out=$(dd if="$T/src/$tag-$i" of="$MNT/ns/$tag-$i/f" bs=1M conv=fsync status=none 2>&1); then
            failed="$tag-$i: $out"
            break
        fi
    done
    touch "$T/stop-$tag"
    wait "$sp" || fail "sampler failed: $(cat "$T/sampler-$tag.err")"
    read -r lo mx n <"$T/out-$tag"
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
write_round b 10 4
expect_stats "$MNT" "stats under min_free=50%" kvfs_enospc_total=0 'kvfs_evictions_total{reason="lru"}>=10'
pass "min_free=50%: 40 MiB more written"

# ---------------------------------------------------------------------------
# 3. min_free and capacity together: the tighter one (capacity=8M) holds.
# ---------------------------------------------------------------------------
kv_remount "$STORE" "$MNT" "codec=none,min_free=32M,capacity=8M"
# the store holds far more than 8M: the background evictor brings it down
# to the low watermark (90%), not further than one context below it
LOW=$((8 * MiB / 100 * 90))
for ((i = 0; i < 30; i++)); do
    s=$(stat1 "$MNT" kvfs_stored_bytes)
    [ "$s" -le "$LOW" ] && break
    sleep 0.1
done
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
