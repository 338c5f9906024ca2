#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench_core.sh - sequential write / cold read benchmark of kvfs against the
# libfuse example filesystems passthrough (high-level) and passthrough_ll.
#
# Usage: bash tests/bench/bench_core.sh [--size MiB] [--runs N] [--kvfs PATH]
#                                       [--dir WORKDIR] [--timeout SEC]
# See tests/bench/README.md for the method.  Must run as root (drop_caches).

set -u -o pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

SIZE_MIB=512
RUNS=3
KVFS="$REPO_ROOT/build/kvfs"
WORKDIR=/var/tmp/kvfs-bench
OP_TIMEOUT=600          # seconds allowed for one dd / cmp
BAR=0.8                 # kvfs must reach BAR x the faster passthrough
EXAMPLES=/usr/share/doc/libfuse3-dev/examples
USAGE_END=9             # last line of the usage text in the header

while [ $# -gt 0 ]; do
    case "$1" in
        --size)    SIZE_MIB=${2:?}; shift 2 ;;
        --runs)    RUNS=${2:?}; shift 2 ;;
        --kvfs)    KVFS=${2:?}; shift 2 ;;
        --dir)     WORKDIR=${2:?}; shift 2 ;;
        --timeout) OP_TIMEOUT=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

posint "$SIZE_MIB" || die "--size must be a positive integer (MiB)"
posint "$RUNS" || die "--runs must be a positive integer"
posint "$OP_TIMEOUT" || die "--timeout must be a positive integer"
bench_check_env gcc pkg-config fusermount3 mountpoint dd cmp timeout awk
[ -f "$EXAMPLES/passthrough.c" ] || die "$EXAMPLES/passthrough.c not found (apt-get install libfuse3-dev)"

bench_abs_kvfs
bench_check_workdir

MNT="$WORKDIR/mnt"
BUILD="$WORKDIR/build"
LOGDIR="$WORKDIR/logs"
SRC="$WORKDIR/src-${SIZE_MIB}M.bin"
SIZE_BYTES=$((SIZE_MIB * 1048576))
REPORT="$WORKDIR/bench_core.md"

# ---------------------------------------------------------------- mounts ----
DPID=""                 # pid of the currently running daemon (our child)
DAEMON_WAIT_S=30        # stop_daemon: seconds for the daemon to flush and exit
bench_traps

# ------------------------------------------------------------- targets ----
TARGETS=()
declare -A LABEL=()
LABEL[kvfs_none]="kvfs codec=none"
LABEL[kvfs_lz4]="kvfs codec=lz4 (default)"
LABEL[pt]="passthrough"
LABEL[pt_ll]="passthrough_ll"

# start_daemon TARGET BACKING LOGFILE -> sets DPID, returns 0 when mounted
start_daemon() {
    local t=$1 back=$2 logf=$3 i
    mkdir -p "$MNT"
    case "$t" in
        kvfs_none) "$KVFS" -f -o codec=none "$back" "$MNT" >>"$logf" 2>&1 & ;;
        kvfs_lz4)  "$KVFS" -f "$back" "$MNT" >>"$logf" 2>&1 & ;;
        pt)        "$BUILD/passthrough" -f "$MNT" >>"$logf" 2>&1 & ;;
        pt_ll)     "$BUILD/passthrough_ll" -f -o "source=$back" "$MNT" >>"$logf" 2>&1 & ;;
    esac
    DPID=$!
    for ((i = 0; i < 200; i++)); do        # up to 20 s
        if mountpoint -q "$MNT" 2>/dev/null; then return 0; fi
        if ! kill -0 "$DPID" 2>/dev/null; then
            wait "$DPID" 2>/dev/null; DAEMON_RC=$?; DPID=""
            log "ERROR: ${LABEL[$t]} exited (rc=$DAEMON_RC) before mounting; log: $logf"
            force_unmount
            return 1
        fi
        sleep 0.1
    done
    log "ERROR: ${LABEL[$t]} did not mount within 20 s; log: $logf"
    stop_daemon
    return 1
}

testfile() {            # path of the test file inside the mount
    case "$1" in
        pt) echo "$MNT$2/f" ;;     # high-level passthrough mirrors /
        *)  echo "$MNT/f" ;;
    esac
}


# ------------------------------------------------------------ results ----
declare -A WRITE=() READ=() VERIFY=() NOTES=() RA=() STORE=() FAILS=()

add_note() {            # add_note TARGET TEXT
    local t=$1; shift
    NOTES[$t]="${NOTES[$t]:+${NOTES[$t]}; }$*"
    log "NOTE ${LABEL[$t]}: $*"
}

# run_one TARGET RUN
run_one() {
    local t=$1 r=$2 back file logf t0 t1 rc bytes
    back="$WORKDIR/back-$t"
    logf="$LOGDIR/$t-run$r.log"
    : > "$logf"
    rm -rf "$back"; mkdir -p "$back"
    file=$(testfile "$t" "$back")

    log "run $r: ${LABEL[$t]}: write $SIZE_MIB MiB"
    if ! start_daemon "$t" "$back" "$logf"; then
        FAILS[$t]=$((${FAILS[$t]:-0} + 1)); add_note "$t" "run $r: mount failed"; log_tail "$logf"
        rm -rf "$back"; return 1
    fi
    # Source file warm in the page cache, dirty data flushed, then time the write.
    cat "$SRC" > /dev/null
    sync; sleep 1
    t0=$(now_ns)
    timeout "$OP_TIMEOUT" dd if="$SRC" of="$file" bs=1M iflag=fullblock conv=fsync status=none 2>>"$logf"
    rc=$?
    t1=$(now_ns)
    stop_daemon
    if [ "$rc" -ne 0 ]; then
        FAILS[$t]=$((${FAILS[$t]:-0} + 1))
        add_note "$t" "run $r: write dd failed rc=$rc$([ "$rc" -eq 124 ] && echo " (timeout ${OP_TIMEOUT}s)"), daemon rc=$DAEMON_RC"
        log_tail "$logf"; rm -rf "$back"; return 1
    fi
    [ "$DAEMON_RC" -eq 0 ] || add_note "$t" "run $r: daemon exit rc=$DAEMON_RC after write+unmount"
    WRITE[$t]+="$(mbps "$SIZE_BYTES" $((t1 - t0))) "
    STORE[$t]=$(du -sb "$back" | awk '{ printf "%.1f", $1 / 1048576 }')

    drop_caches
    log "run $r: ${LABEL[$t]}: cold read"
    if ! start_daemon "$t" "$back" "$logf"; then
        FAILS[$t]=$((${FAILS[$t]:-0} + 1)); add_note "$t" "run $r: remount failed"; log_tail "$logf"
        rm -rf "$back"; return 1
    fi
    RA[$t]=$(cat "/sys/class/bdi/$(mountpoint -d "$MNT")/read_ahead_kb" 2>/dev/null || echo "?")
    t0=$(now_ns)
    bytes=$(timeout "$OP_TIMEOUT" dd if="$file" of=/dev/null bs=1M 2>&1 >/dev/null |
            awk '/bytes/ { print $1 }')
    rc=$?
    t1=$(now_ns)
    if [ "$rc" -ne 0 ] || [ "${bytes:-0}" != "$SIZE_BYTES" ]; then
        FAILS[$t]=$((${FAILS[$t]:-0} + 1))
        add_note "$t" "run $r: cold read failed (rc=$rc, read ${bytes:-?} of $SIZE_BYTES bytes)"
        stop_daemon; log_tail "$logf"; rm -rf "$back"; return 1
    fi
    READ[$t]+="$(mbps "$SIZE_BYTES" $((t1 - t0))) "

    if [ -z "${VERIFY[$t]:-}" ]; then       # correctness, once per target, untimed
        local out
        if out=$(timeout "$OP_TIMEOUT" cmp "$file" "$SRC" 2>&1); then
            VERIFY[$t]="ok"
        else
            VERIFY[$t]="MISMATCH"
            add_note "$t" "run $r: cmp: ${out:-timeout}"
        fi
    fi
    stop_daemon
    [ "$DAEMON_RC" -eq 0 ] || add_note "$t" "run $r: daemon exit rc=$DAEMON_RC after read+unmount"
    rm -rf "$back"
    return 0
}

# ---------------------------------------------------------------- stats ----
median() { tr ' ' '\n' | awk 'NF' | sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print ""; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { tr ' ' '\n' | awk 'NF' | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) print lo "–" hi }'; }
cell() {                # "median (min–max)" or "–"
    local m; m=$(echo "$1" | median)
    if [ -z "$m" ]; then echo "–"; else echo "$m ($(echo "$1" | minmax))"; fi
}

# ----------------------------------------------------------------- main ----
mkdir -p "$BUILD" "$LOGDIR"
bench_clear_stale_mount
rm -rf "$WORKDIR"/back-*

log "building libfuse examples in $BUILD"
build_passthroughs "$BUILD" "$LOGDIR"

KVFS_MSG=""
if [ -x "$KVFS" ] && [ -f "$KVFS" ]; then
    TARGETS+=(kvfs_none kvfs_lz4)
    KVFS_MSG=$(kvfs_msg)
    log "kvfs: $KVFS ($KVFS_MSG)"
else
    KVFS_MSG="kvfs binary not found or not executable at $KVFS: SKIPPING the kvfs targets"
    log "$KVFS_MSG"
fi
TARGETS+=(pt pt_ll)

if [ ! -f "$SRC" ] || [ "$(stat -c %s "$SRC")" != "$SIZE_BYTES" ]; then
    log "generating $SIZE_MIB MiB of random data in $SRC"
    rm -f "$WORKDIR"/src-*M.bin
    if ! dd if=/dev/urandom of="$SRC.tmp" bs=1M count="$SIZE_MIB" iflag=fullblock status=none ||
        ! mv "$SRC.tmp" "$SRC"; then
        die "cannot create $SRC"
    fi
fi

describe_machine "$(free -g | awk '/^Mem:/ { print $2 }')" "$(pkg-config --modversion fuse3)"
log "machine: $MACHINE"
log "backing fs: $DF_LINE"

n=${#TARGETS[@]}
for ((r = 1; r <= RUNS; r++)); do
    for ((i = 0; i < n; i++)); do
        t=${TARGETS[$(((i + r - 1) % n))]}
        run_one "$t" "$r"
    done
done

# --------------------------------------------------------------- report ----
best_pt() {             # best_pt WRITE|READ -> "median label" of the faster passthrough
    local -n arr=$1
    local m bm="" bl=""
    for t in pt pt_ll; do
        m=$(echo "${arr[$t]:-}" | median)
        [ -n "$m" ] || continue
        if [ -z "$bm" ] || [ "$m" -gt "$bm" ]; then bm=$m; bl=${LABEL[$t]}; fi
    done
    echo "$bm|$bl"
}

{
    echo "# kvfs core benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), ${SIZE_MIB} MiB file, $RUNS runs per target, targets interleaved (rotated each run)."
    echo
    echo "Machine: $MACHINE"
    echo
    echo "Backing fs (df -T $WORKDIR): $DF_LINE"
    echo
    echo "kvfs: $KVFS${KVFS_MSG:+ — $KVFS_MSG}"
    echo
    echo "Write: \`dd bs=1M iflag=fullblock conv=fsync\` of random data (source warm in page cache). Cold read: unmount, sync, drop_caches, remount, \`dd bs=1M of=/dev/null\`. MB/s = 10^6 B/s, median (min–max). Passthroughs built from the libfuse examples and run as shipped (default options, multithreaded)."
    echo
    echo "| target | write MB/s | cold read MB/s | runs ok | cmp | read_ahead_kb | store MiB | notes |"
    echo "|---|---|---|---|---|---|---|---|"
    for t in kvfs_none kvfs_lz4 pt pt_ll; do
        if [[ " ${TARGETS[*]} " != *" $t "* ]]; then
            echo "| ${LABEL[$t]} | skipped | skipped | 0/0 | – | – | – | binary missing |"
            continue
        fi
        ok=$((RUNS - ${FAILS[$t]:-0}))
        echo "| ${LABEL[$t]} | $(cell "${WRITE[$t]:-}") | $(cell "${READ[$t]:-}") | $ok/$RUNS | ${VERIFY[$t]:-not checked} | ${RA[$t]:-?} | ${STORE[$t]:-?} | ${NOTES[$t]:-} |"
    done
    echo
    echo "Ratio of kvfs to the faster passthrough (by median), bar ${BAR}x:"
    echo
    echo "| kvfs target | measure | kvfs MB/s | best passthrough MB/s | ratio | result |"
    echo "|---|---|---|---|---|---|"
    for t in kvfs_none kvfs_lz4; do
        for meas in WRITE READ; do
            mname=$([ "$meas" = WRITE ] && echo "write" || echo "cold read")
            IFS='|' read -r bm bl <<< "$(best_pt "$meas")"
            if [[ " ${TARGETS[*]} " != *" $t "* ]]; then
                echo "| ${LABEL[$t]} | $mname | skipped | ${bm:-–} ($bl) | – | SKIPPED |"; continue
            fi
            declare -n arr=$meas
            km=$(echo "${arr[$t]:-}" | median)
            unset -n arr
            if [ -z "$km" ] || [ -z "$bm" ]; then
                echo "| ${LABEL[$t]} | $mname | ${km:-–} | ${bm:-–} ($bl) | – | FAIL (no data) |"; continue
            fi
            ratio=$(awk -v a="$km" -v b="$bm" 'BEGIN { printf "%.2f", a / b }')
            res=$(awk -v x="$ratio" -v bar="$BAR" 'BEGIN { print (x >= bar) ? "PASS" : "FAIL" }')
            [ "${VERIFY[$t]:-}" = "MISMATCH" ] && res="FAIL (wrong data)"
            echo "| ${LABEL[$t]} | $mname | $km | $bm ($bl) | ${ratio}x | $res |"
        done
    done
    echo
    echo "Per-run MB/s (in run order):"
    echo
    for t in "${TARGETS[@]}"; do
        w=${WRITE[$t]:-}; rd=${READ[$t]:-}
        echo "* ${LABEL[$t]}: write [${w% }], read [${rd% }]"
    done
} > "$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
cat "$REPORT"
log "report written to $REPORT; daemon logs in $LOGDIR"
