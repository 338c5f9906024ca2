#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench_list.sh - time listing one large directory through kvfs: `ls -f`,
# `ls -l` and `du -s` of ns/ holding N context directories, for each N given.
# A listing must cost time in proportion to N (issue 12: it was quadratic).
#
# Usage: bash tests/bench/bench_list.sh [--dir WORKDIR] [--kvfs PATH]
#            [--entries LIST] [--big] [--timeout SEC]
#   --entries  comma-separated directory sizes (default 2000,8000,32000,100000)
#   --big      add 1000000 (about 10 min on a 2-core machine)
# Must run as root (drop_caches). Prints a markdown table; the TSV is in
# WORKDIR/bench_list.tsv.

# shellcheck disable=SC2034  # USAGE_END, DAEMON_WAIT_S are read by lib.sh
set -u -o pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

WORKDIR=/var/tmp/kvfs-bench-list
KVFS="$REPO_ROOT/build/kvfs"
ENTRIES=2000,8000,32000,100000
OP_TIMEOUT=1800
USAGE_END=12

while [ $# -gt 0 ]; do
    case "$1" in
        --dir)     WORKDIR=${2:?}; shift 2 ;;
        --kvfs)    KVFS=${2:?}; shift 2 ;;
        --entries) ENTRIES=${2:?}; shift 2 ;;
        --big)     ENTRIES="$ENTRIES,1000000"; shift ;;
        --timeout) OP_TIMEOUT=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done
[[ "$ENTRIES" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--entries: a comma-separated list of sizes"

bench_check_env fusermount3 mountpoint timeout sqlite3 ls du awk
bench_need_kvfs
bench_check_workdir
MNT="$WORKDIR/mnt"
STORE="$WORKDIR/store"
LOGF="$WORKDIR/bench_list.log"
DPID=""
DAEMON_WAIT_S=120
bench_traps
bench_clear_stale_mount
mkdir -p "$MNT"
: > "$LOGF"

start() {
    "$KVFS" -f "$STORE" "$MNT" >>"$LOGF" 2>&1 &
    DPID=$!
    for _ in $(seq 600); do
        mountpoint -q "$MNT" && return 0
        kill -0 "$DPID" 2>/dev/null || break
        sleep 0.1
    done
    log_tail "$LOGF"
    die "kvfs did not mount $STORE"
}

# make_store N: a store whose ns/ holds N empty context directories cNNNNNNN
# (with their context rows), bulk-inserted into the index in one
# transaction as bench_policy.sh does; only tables of schema 1 and 2.
make_store() {
    rm -rf "$STORE"
    start
    mkdir "$MNT/ns" || die "mkdir ns failed"
    stop_daemon
    sqlite3 -bail "$STORE/kvfs.db" >>"$LOGF" 2>&1 <<EOF || die "bulk insert failed (see $LOGF)"
PRAGMA cache_size=-262144;
BEGIN IMMEDIATE;
CREATE TEMP TABLE p AS SELECT (SELECT max(ino) FROM inode) AS base,
  (SELECT ino FROM dentry WHERE parent=1 AND name=CAST('ns' AS BLOB)) AS ns,
  CAST(strftime('%s','now') AS INTEGER) * 1000000000 AS t, $1 AS n;
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s, p WHERE i + 1 < p.n)
INSERT INTO inode(ino,mode,uid,gid,nlink,size,stored,atime,mtime,ctime)
  SELECT base + 1 + i, 16877, 0, 0, 2, 0, 0, t, t, t FROM s, p;
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s, p WHERE i + 1 < p.n)
INSERT INTO dentry(parent,name,ino) SELECT ns, CAST(printf('c%07d', i) AS BLOB), base + 1 + i FROM s, p;
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s, p WHERE i + 1 < p.n)
INSERT INTO context(ino,last_access,hits,pin,ttl) SELECT base + 1 + i, t, 0, 0, NULL FROM s, p;
UPDATE inode SET nlink = 2 + (SELECT n FROM p) WHERE ino = (SELECT ns FROM p);
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
EOF
    # The first mount upgrades the schema, if it is older: not timed.
    start
    stop_daemon
}

# timed N WHAT CMD...: mount, drop caches, run CMD (its stdout counted),
# unmount; prints seconds. The count must be N plus what CMD adds.
timed() {
    local n=$1 what=$2 t0 t1 got
    shift 2
    start
    drop_caches
    t0=$(now_ns)
    got=$(cd "$MNT/ns" && timeout "$OP_TIMEOUT" "$@" 2>>"$LOGF" | wc -l)
    t1=$(now_ns)
    stop_daemon
    [ "$got" -ge "$n" ] || log "WARNING: $what of $n entries printed $got lines"
    awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", ns / 1e9 }'
}

log "kvfs: $KVFS ($(kvfs_msg)); workdir $WORKDIR; sizes $ENTRIES"
TSV="$WORKDIR/bench_list.tsv"
printf 'entries\tls_f_s\tls_l_s\tdu_s_s\n' > "$TSV"
echo "| entries | \`ls -f\` s | \`ls -l\` s | \`du -s\` s | \`ls -f\` µs/entry |"
echo "|---:|---:|---:|---:|---:|"
for n in ${ENTRIES//,/ }; do
    log "ns/ with $n entries: building the store"
    make_store "$n"
    f=$(timed "$n" "ls -f" ls -f)
    l=$(timed "$n" "ls -l" ls -l)
    d=$(timed 1 "du -s" du -s .)
    printf '%s\t%s\t%s\t%s\n' "$n" "$f" "$l" "$d" >> "$TSV"
    echo "| $n | $f | $l | $d | $(awk -v s="$f" -v n="$n" 'BEGIN { printf "%.1f", s * 1e6 / n }') |"
done
rm -rf "$STORE"
log "results: $TSV; log: $LOGF"
