#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# Crash consistency: seeded iterations of concurrent writers and readers on
# one store, the daemon killed with SIGKILL at a random moment (in some
# iterations under a small capacity, during eviction), the dead mount
# detached, kvfs restarted on the same store and the whole tree checked
# against the writers' journals (tests/reliability/crash.py says exactly what
# may be found). Then: `kvfsctl info` works, `kvfsctl gc` gives back what the
# crashes left in the segments, and the data is still intact after gc.
#
# CRASH_SEED (default: random, printed), CRASH_ITERS (a fixed number of
# iterations) or CRASH_SECONDS (iterations for that long, at least
# CRASH_MIN_ITERS=15; default 120 s; 90 s in an ASan build) override the defaults.
# A restart after a crash must give back the space the crash left in the
# segments (docs/reliability.md; CRASH_EXPECT_RECLAIM=0 only reports it).
# A kill after which kvfs does not exit within 10 s (a thread stuck in the
# kernel keeps the FUSE connection, and every process waiting on it, alive;
# the loop then aborts the connection through fusectl) is a failure, or only
# counted with CRASH_ALLOW_STUCK_KILL=1.
# CRASH_STRICT_PUBLISH=1 holds a file written at the kill to its last
# version its writer published, as docs/reliability.md words it, instead of
# also allowing the prefix that another descriptor's close() published.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

CRASH=$KV_REPO/tests/reliability/crash.py
SEED=${CRASH_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
SECONDS_DEFAULT=120
if nm -an "$KVFS" 2>/dev/null | grep __asan_init >/dev/null; then SECONDS_DEFAULT=90; fi
log "seed $SEED (rerun with CRASH_SEED=$SEED)"

STORE=$T/store
MNT=$T/mnt
WORK=$T/work
mkdir -p "$MNT" "$WORK"
args=(--kvfs "$KVFS" --kvfsctl "$KVFSCTL" --store "$STORE" --mnt "$MNT" --work "$WORK"
      --seed "$SEED" --min-iters "${CRASH_MIN_ITERS:-15}")
if [ "${CRASH_EXPECT_RECLAIM:-1}" = 1 ]; then args+=(--expect-reclaim); fi
if [ "${CRASH_STRICT_PUBLISH:-0}" = 1 ]; then args+=(--strict-publish); fi
if [ "${CRASH_ALLOW_STUCK_KILL:-0}" = 1 ]; then args+=(--allow-stuck-kill); fi
if [ -n "${CRASH_ITERS:-}" ]; then
    args+=(--iters "$CRASH_ITERS")
else
    args+=(--seconds "${CRASH_SECONDS:-$SECONDS_DEFAULT}")
fi
rc=0
python3 "$CRASH" loop "${args[@]}" >&2 || rc=$?
# the loop's daemons are not ours: make sure none is left on the mount
if kv_is_mounted "$MNT"; then fusermount3 -uz "$MNT" || true; fi
[ -s "$WORK/summary.json" ] || fail "the crash loop ended without a summary (rc=$rc)"
ITERS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["iterations"])' "$WORK/summary.json")
# on violations, the checks of the store below still run; the test fails at the end
LOOP_FAILED=""
if [ "$rc" -ne 0 ]; then
    LOOP_FAILED="the crash loop found violations (seed $SEED: rerun with CRASH_SEED=$SEED; see VIOLATION lines above)"
    log "FAIL (reported at the end): $LOOP_FAILED"
else
    check '[ "$ITERS" -ge "${CRASH_ITERS:-${CRASH_MIN_ITERS:-15}}" ]' "only $ITERS crash iterations ran"
    pass "$ITERS crash iterations: every journaled file intact after SIGKILL and restart"
fi

# --- space left by the crashes, and kvfsctl gc ----------------------------------
seg_du() { du -B1 -s "$STORE/segments" | cut -f1; }
live=$(kv_info "$STORE" stored_bytes)
files=$(kv_info "$STORE" files)
before=$(seg_du)
log "after $ITERS crashes: live records $live bytes in $files files, segments use $before bytes"
out=$("$KVFSCTL" gc "$STORE" 2>&1) || fail "kvfsctl gc $STORE failed: $out"
log "kvfsctl gc: $out"
after=$(seg_du)
nseg=$(find "$STORE/segments" -name '*.seg' | wc -l)
# Every record the index names (chunks and inode records): the iterations
# with large files make files of up to 48 chunks.
recs=$(sqlite3 "file:$STORE/kvfs.db?mode=ro" 'SELECT count(*) FROM chunk')
# Left after gc: the live records, the blocks they share with punched
# neighbours (at most two 4 KiB blocks per record) and each segment's
# header block.
slack=$((recs * 8192 + nseg * 4096 + 65536))
check '[ "$after" -le "$((live + slack))" ]' \
    "segments use $after bytes after kvfsctl gc, live records $live (+ slack $slack)"
pass "kvfsctl gc: segments $before -> $after bytes for $live live bytes"
assert_eq "$(kv_info "$STORE" stored_bytes)" "$live" "stored_bytes changed by gc"

# --- the data is still intact after gc --------------------------------------------
kv_mount "$STORE" "$MNT"
out=$(python3 "$CRASH" verify --mnt "$MNT" --work "$WORK" 2>&1) || fail "after kvfsctl gc: $out"
log "$out"
kv_umount "$MNT"
pass "tree intact after gc and another remount"
[ -z "$LOOP_FAILED" ] || fail "$LOOP_FAILED"
