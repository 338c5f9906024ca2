#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016,SC2017  # check() evals its condition string later; a/100*p: the daemon's arithmetic
# Concurrency stress under a small cap (tests/reliability/stress.py): writer
# processes and threads replace and rewrite overlapping contexts while
# reader processes and threads read them and eviction runs all the time. A
# watchdog dumps the daemon's threads (gdb) and fails when nothing completes
# for STRESS_STALL seconds (default 20); every read returns either ENOENT
# or what the writers put there (stress.py says exactly what is allowed);
# stored bytes never pass the cap plus one chunk per writer thread and
# compression worker. Afterwards the daemon is alive, its stats parse, its
# stored bytes are back under the cap and it unmounts cleanly.
#
# STRESS_SECONDS (default 60; 45 in an ASan build), STRESS_SEED (default:
# random, printed) and STRESS_STALL override the defaults.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=policy_lib.sh
. "$(dirname "$0")/policy_lib.sh"

STRESS=$KV_REPO/tests/reliability/stress.py
SEED=${STRESS_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
SECS=60
if nm -an "$KVFS" 2>/dev/null | grep __asan_init >/dev/null; then SECS=45; fi
SECS=${STRESS_SECONDS:-$SECS}
log "seed $SEED (rerun with STRESS_SEED=$SEED), $SECS s"
command -v gdb >/dev/null || log "gdb is not installed: a deadlock will be reported without the daemon's stacks"

CAP=$((32 * MiB))
WRITERS=2 WTHREADS=2 WORKERS=2
# one chunk (and its header) per writer thread and per compression worker
SLACK=$(((WRITERS * WTHREADS + WORKERS) * REC))
STORE=$T/store
MNT=$T/mnt
mkdir -p "$T/work"
kv_mount "$STORE" "$MNT" "capacity=32M,workers=$WORKERS"
PID=${KV_PID[$MNT]}

rc=0
py "$STRESS" --mnt "$MNT" --work "$T/work" --pid "$PID" --cap "$CAP" --slack "$SLACK" \
    --seed "$SEED" --seconds "$SECS" --writers $WRITERS --wthreads $WTHREADS \
    --readers 2 --rthreads 2 --stall "${STRESS_STALL:-20}" >&2 || rc=$?
kv_assert_alive
[ "$rc" -eq 0 ] || fail "stress found violations (seed $SEED)"
pass "$SECS s of concurrent writers, readers and eviction: every read was ENOENT or written bytes"

f=$(snap "$MNT")
HIGH=$((CAP / 100 * 95))
wait_stored "$MNT" "$HIGH" 30
check '[ "$STORED" -le "$HIGH" ]' "stored $STORED still above the high watermark $HIGH 3 s after the stress"
lru=$(py "$PROM" "$f" --get 'kvfs_evictions_total{reason="lru"}')
check '[ "$lru" -gt 0 ]' "no LRU eviction happened under a $CAP-byte cap"
# every context the stats count is one a listing shows (<ns>/<ctx>/, depth 2)
for ((i = 0; i < 10; i++)); do
    ctxs=$(stat1 "$MNT" kvfs_contexts)
    listed=$(find "$MNT" -mindepth 2 -maxdepth 2 | wc -l)
    [ "$ctxs" = "$listed" ] && break
    sleep 0.3
done
log "after the stress: $ctxs contexts, stored $STORED, $lru LRU evictions, enospc $(py "$PROM" "$f" --get kvfs_enospc_total)"
[ "$ctxs" = "$listed" ] ||
    soft_fail "kvfs_contexts is $ctxs but the mount lists $listed contexts (the index keeps context rows of contexts that are gone)"
DLOG=${KV_LOG[$MNT]}
kv_umount "$MNT"
if grep -E "AddressSanitizer|LeakSanitizer|runtime error" "$DLOG" >&2; then
    soft_fail "the daemon's log has sanitizer reports (above)"
fi
n=$(grep -c "eviction failed" "$DLOG" || true)
[ "$n" -eq 0 ] || log "the daemon logged $n failed evictions, e.g.: $(grep -m1 "eviction failed" "$DLOG")"
info=$("$KVFSCTL" info "$STORE") || fail "kvfsctl info after the stress: $info"
soft_pass "daemon alive, stats parse, stored under the cap, contexts counted right, clean unmount"
soft_done
