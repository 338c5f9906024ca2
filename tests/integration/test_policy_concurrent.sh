#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016,SC2012,SC2010,SC2017
# (check() evals its condition string later; ls: the readdir of the mount is
# what is observed, and every name is ours; a/100*p: the daemon's own arithmetic)
# Cache policy, part 3: concurrent writers under a cap. Four processes, then
# four threads of one process, write different contexts while a sampler
# reads .kvfs/stats continuously; stored bytes must stay within the cap
# plus one chunk (and its header) per writer, no write may fail while
# other contexts can be evicted, a context held open must not be evicted,
# and the surviving contexts must read back intact.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=policy_lib.sh
. "$(dirname "$0")/policy_lib.sh"

CAP=$((12 * MiB))
WRITERS=4
PER=6                        # contexts per writer
SIZE=$((2 * MiB))            # two chunks per context
BOUND=$((CAP + WRITERS * REC))

STORE=$T/store
MNT=$T/mnt
kv_mount "$STORE" "$MNT" "capacity=12M,codec=none"

# A context held open from the start: it is the least recently used one
# throughout, and must not be evicted while its file is open.
mkdir -p "$T/src" "$MNT/ns/held"
head -c $MiB /dev/urandom >"$T/src/held"
cp "$T/src/held" "$MNT/ns/held/f"
exec 9<"$MNT/ns/held/f"

# ---------------------------------------------------------------------------
# 1. Four writer processes.
# ---------------------------------------------------------------------------
for ((w = 0; w < WRITERS; w++)); do
    for ((i = 0; i < PER; i++)); do head -c $SIZE /dev/urandom >"$T/src/p$w-$i"; done
done
start_sampler proc "$MNT" 0
pids=()
for ((w = 0; w < WRITERS; w++)); do
    (
        for ((i = 0; i < PER; i++)); do
            mkdir -p "$MNT/ns/p$w-$i"
            err=$(dd if="$T/src/p$w-$i" of="$MNT/ns/p$w-$i/f" bs=256K conv=fsync status=none 2>&1) ||
                echo "p$w-$i $err" >>"$T/failed-proc"
        done
    ) &
    pids+=($!)
done
for ((w = 0; w < WRITERS; w++)); do wait "${pids[$w]}"; done
stop_sampler proc
log "processes: max stored $MAX (bound $BOUND) over $SAMPLES samples"
kv_assert_alive
FAILED_CTX=()
if [ -s "$T/failed-proc" ]; then
    mapfile -t FAILED_CTX < <(awk '{ print $1 }' "$T/failed-proc")
    soft_fail "writer processes failed although unpinned contexts could be evicted: $(tr '\n' ';' <"$T/failed-proc")"
fi
check '[ "$SAMPLES" -ge 20 ]' "the sampler read the stats only $SAMPLES times"
check '[ "$MAX" -le "$BOUND" ]' "4 writer processes: max stored $MAX > cap $CAP + 4 chunks ($BOUND)"
# the background evictor brings stored under the high watermark (95%) within ~1 s
HIGH=$((CAP / 100 * 95))
wait_stored "$MNT" "$HIGH" 25
s=$STORED
check '[ "$s" -le "$HIGH" ]' "stored $s still above the high watermark $HIGH 2.5 s after the writers finished"
[ -d "$MNT/ns/held" ] || { kv_assert_alive; fail "a context with an open file was evicted"; }
cmp "$T/src/held" /dev/fd/9 || fail "the held-open context reads back wrong through its open fd"
cmp "$T/src/held" "$MNT/ns/held/f" || fail "the held-open context is damaged"
mapfile -t SURV < <(ls "$MNT/ns" | grep '^p' | LC_ALL=C sort)
n=${#SURV[@]}
check '[ "$n" -ge 2 ] && [ "$n" -lt $((WRITERS * PER)) ]' "$n of $((WRITERS * PER)) contexts survive a 12 MiB cap"
for c in "${SURV[@]}"; do
    [[ " ${FAILED_CTX[*]} " == *" $c "* ]] && continue
    cmp "$T/src/$c" "$MNT/ns/$c/f" || fail "surviving context $c differs from what was written"
done
expect_stats "$MNT" "stats after 4 writer processes" \
    "kvfs_contexts=$((n + 1))" "kvfs_files=$((n + 1))" \
    "kvfs_written_bytes_total=$((WRITERS * PER * SIZE + MiB))" \
    "kvfs_evictions_total{reason=\"lru\"}=$((WRITERS * PER - n))"
if [ ${#FAILED_CTX[@]} -eq 0 ]; then
    expect_stats "$MNT" "stats after 4 writer processes" \
        "kvfs_stored_bytes=$((n * 2 * REC + REC))" kvfs_enospc_total=0
    pass "4 processes: max stored $MAX <= $BOUND, $n contexts survive intact, the open one kept"
fi

# ---------------------------------------------------------------------------
# 2. Four threads of one process (three rounds).
# ---------------------------------------------------------------------------
cat >"$T/threads.py" <<'EOF'
# threads.py DIR WRITERS PER SIZE: each thread writes PER contexts DIR/tW-I/f of
# SIZE deterministic random bytes in 256 KiB writes; prints failures.
import os, random, sys, threading
root, writers, per, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
errors = []
start = threading.Barrier(writers)

def data(w, i):
    return random.Random(1000 * w + i).randbytes(size)

def writer(w):
    start.wait()
    for i in range(per):
        d = os.path.join(root, "t%d-%d" % (w, i))
        try:
            os.makedirs(d)
            buf = data(w, i)
            with open(os.path.join(d, "f"), "wb", buffering=0) as f:
                for off in range(0, size, 256 << 10):
                    f.write(buf[off:off + (256 << 10)])
                os.fsync(f.fileno())
        except OSError as e:
            errors.append("t%d-%d %s" % (w, i, e))

threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
EOF
cat >"$T/verify.py" <<'EOF'
# verify.py DIR SIZE NAME...: each DIR/NAME/f (NAME = [x/]tW-I) holds its data.
import random, sys
root, size = sys.argv[1], int(sys.argv[2])
bad = []
for name in sys.argv[3:]:
    w, i = map(int, name.split("/")[-1][1:].split("-"))
    with open("%s/%s/f" % (root, name), "rb") as f:
        if f.read() != random.Random(1000 * w + i).randbytes(size):
            bad.append(name)
print(" ".join(bad))
sys.exit(1 if bad else 0)
EOF
ev0=$(stat1 "$MNT" 'kvfs_evictions_total{reason="lru"}')
w0=$(stat1 "$MNT" kvfs_written_bytes_total)
ROUNDS=3
start_sampler thr "$MNT" 0
rc=0 out=""
for ((r = 1; r <= ROUNDS; r++)); do
    if ! o=$(py "$T/threads.py" "$MNT/thr$r" $WRITERS $PER $SIZE 2>&1); then
        rc=1
        while IFS= read -r line; do out+="thr$r/$line"$'\n'; done <<<"$o"
    fi
done
stop_sampler thr
log "threads: max stored $MAX (bound $BOUND) over $SAMPLES samples"
kv_assert_alive
FAILED_CTX=()
if [ "$rc" -ne 0 ]; then
    mapfile -t FAILED_CTX < <(awk 'NF { print $1 }' <<<"$out")
    soft_fail "writer threads failed although unpinned contexts could be evicted: $(tr '\n' ';' <<<"$out")"
fi
check '[ "$SAMPLES" -ge 20 ]' "the sampler read the stats only $SAMPLES times"
check '[ "$MAX" -le "$BOUND" ]' "4 writer threads: max stored $MAX > cap $CAP + 4 chunks ($BOUND)"
[ -d "$MNT/ns/held" ] || { kv_assert_alive; fail "a context with an open file was evicted (threads)"; }
cmp "$T/src/held" "$MNT/ns/held/f" || fail "the held-open context is damaged (threads)"
TS=()
for ((r = 1; r <= ROUNDS; r++)); do
    for c in "$MNT/thr$r"/*; do
        if [ -e "$c" ]; then TS+=("thr$r/${c##*/}"); fi
    done
done
n=${#TS[@]}
check '[ "$n" -ge 2 ]' "only $n thread contexts survive"
GOOD=()
for c in "${TS[@]}"; do
    [[ " ${FAILED_CTX[*]} " == *" $c "* ]] || GOOD+=("$c")
done
out=$(py "$T/verify.py" "$MNT" $SIZE "${GOOD[@]}") || fail "thread contexts differ from what was written: $out"
pleft=$(ls "$MNT/ns" | grep -c '^p' || true)
expect_stats "$MNT" "stats after 4 writer threads" \
    "kvfs_contexts=$((n + pleft + 1))" "kvfs_files=$((n + pleft + 1))" \
    "kvfs_written_bytes_total=$((w0 + ROUNDS * WRITERS * PER * SIZE))" \
    "kvfs_evictions_total{reason=\"lru\"}=$((ev0 + ROUNDS * WRITERS * PER - n + (${#SURV[@]} - pleft)))"
[ "$rc" -ne 0 ] || expect_stats "$MNT" "stored bytes after 4 writer threads" \
    "kvfs_stored_bytes=$(((n + pleft) * 2 * REC + REC))"
e=$(stat1 "$MNT" kvfs_enospc_total)
[ "$e" = 0 ] || soft_fail "kvfs_enospc_total is $e after 4 writer threads with evictable contexts"
[ "$rc" -ne 0 ] || pass "4 threads: max stored $MAX <= $BOUND, $n contexts survive intact"

# ---------------------------------------------------------------------------
# 3. Once closed, the held context is evictable again.
# ---------------------------------------------------------------------------
exec 9<&-
"$KVFSCTL" evict "$MNT" --to 0 || fail "kvfsctl evict --to 0 after closing the held file"
ls "$MNT/ns" | grep -qx held && fail "ns/held survived evict --to 0 after its file was closed"
sleep 1.5    # the kernel is told to forget evicted entries by the evictor (every 1 s)
! stat "$MNT/ns/held" >/dev/null 2>&1 || fail "evicted ns/held can still be looked up"
expect_stats "$MNT" "after evicting everything" kvfs_contexts=0 kvfs_stored_bytes=0 kvfs_files=0
kv_umount "$MNT"
pass "closed context evictable; store empty"
soft_done
