#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench_fio.sh - throughput of kvfs (codec none, lz4, zstd) against libfuse's
# passthrough and passthrough_ll examples, the backing directory itself and
# tmpfs, all in the same run: sequential write, cold and warm sequential read,
# random 4 KiB and 64 KiB reads, each with 1 and 2 jobs.
#
# Usage: bash tests/bench/bench_fio.sh [--size MiB] [--runs N] [--rand-runtime SEC]
#            [--rand-state warm|cold] [--data kv|random] [--kv DIR] [--targets LIST] [--kvfs PATH]
#            [--dir WORKDIR] [--results DIR] [--timeout SEC] [--quick]
# Targets: kvfs-none,kvfs-lz4,kvfs-zstd,passthrough,passthrough_ll,direct,tmpfs
# Writes RESULTS/fio.tsv and RESULTS/fio.md (RESULTS: WORKDIR/results).
# See tests/bench/README.md for the method.  Must run as root (drop_caches).

set -u -o pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

SIZE_MIB=1024
RUNS=3
RAND_S=5                # seconds of each random-read job
RAND_STATE=warm         # random reads after the warm read (warm) or after a remount + drop_caches (cold)
DATA=kv
KV_DIR="$REPO_ROOT/tests/data/kv"
TARGET_LIST="kvfs-none,kvfs-lz4,kvfs-zstd,passthrough,passthrough_ll,direct,tmpfs"
KVFS="$REPO_ROOT/build/kvfs"
WORKDIR=/var/tmp/kvfs-bench-fio
RESULTS=""
OP_TIMEOUT=600          # seconds allowed for one dd / fio / cmp
QUICK=0
BAR=1.0                 # kvfs PASSes a figure at BAR x the faster passthrough
USAGE_END=12            # last line of the usage text in the header

# --quick (a smoke test of a minute or two) sets small defaults; explicit
# options win wherever they are on the command line.
for a in "$@"; do
    [ "$a" = --quick ] && { QUICK=1; SIZE_MIB=32; RUNS=1; RAND_S=1; }
done
while [ $# -gt 0 ]; do
    case "$1" in
        --size)         SIZE_MIB=${2:?}; shift 2 ;;
        --runs)         RUNS=${2:?}; shift 2 ;;
        --rand-runtime) RAND_S=${2:?}; shift 2 ;;
        --rand-state)   RAND_STATE=${2:?}; shift 2 ;;
        --data)         DATA=${2:?}; shift 2 ;;
        --kv)           KV_DIR=${2:?}; shift 2 ;;
        --targets)      TARGET_LIST=${2:?}; shift 2 ;;
        --kvfs)         KVFS=${2:?}; shift 2 ;;
        --dir)          WORKDIR=${2:?}; shift 2 ;;
        --results)      RESULTS=${2:?}; shift 2 ;;
        --timeout)      OP_TIMEOUT=${2:?}; shift 2 ;;
        --quick)        shift ;;
        -h|--help)      usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

posint "$SIZE_MIB" && [ $((SIZE_MIB % 2)) -eq 0 ] ||
    die "--size must be a positive even integer (MiB): 2 jobs write half each"
posint "$RUNS" || die "--runs must be a positive integer"
posint "$RAND_S" || die "--rand-runtime must be a positive integer (seconds)"
posint "$OP_TIMEOUT" || die "--timeout must be a positive integer"
case "$DATA" in kv|random) ;; *) die "--data must be kv or random" ;; esac
case "$RAND_STATE" in warm|cold) ;; *) die "--rand-state must be warm or cold" ;; esac
bench_check_env gcc pkg-config fusermount3 mountpoint findmnt dd cmp timeout awk fio python3

bench_abs_kvfs
bench_check_workdir

MNT="$WORKDIR/mnt"
BUILD="$WORKDIR/build"
LOGDIR="$WORKDIR/logs"
RESULTS=${RESULTS:-$WORKDIR/results}
bench_results_dir
TSV="$RESULTS/fio.tsv"
REPORT="$RESULTS/fio.md"
RAW="$WORKDIR/fio-raw.tsv"          # rows as measured, sorted into TSV at the end
INFO="$WORKDIR/fio-info.tsv"        # target key value: notes, store size, readahead, cmp
SIZE_BYTES=$((SIZE_MIB * 1048576))
HALF_MIB=$((SIZE_MIB / 2))
HALF_BYTES=$((HALF_MIB * 1048576))

DPID=""
DAEMON_WAIT_S=60
bench_traps

# ------------------------------------------------------------- targets ----
ALL_TARGETS=(kvfs-none kvfs-lz4 kvfs-zstd passthrough passthrough_ll direct tmpfs)
TARGETS=()
IFS=',' read -r -a want <<< "$TARGET_LIST"
for t in "${want[@]}"; do
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "unknown target $t (known: ${ALL_TARGETS[*]})"
done
declare -A LABEL=(
    [kvfs-none]="kvfs codec=none" [kvfs-lz4]="kvfs codec=lz4" [kvfs-zstd]="kvfs codec=zstd"
    [passthrough]="passthrough" [passthrough_ll]="passthrough_ll"
    [direct]="backing dir ($FSTYPE)" [tmpfs]="tmpfs"
)

# The id of a target in the TSV and the charts (the direct target is named
# after the file system of the work dir).
declare -A TID=()
for t in "${ALL_TARGETS[@]}"; do TID[$t]=$t; done
TID[direct]="$FSTYPE-dir"

# mount_target TARGET BACKING LOGFILE: mount (FUSE daemons, tmpfs); sets DPID.
mount_target() {
    local t=$1 back=$2 logf=$3 i
    mkdir -p "$MNT"
    case "$t" in
        direct) return 0 ;;
        tmpfs)
            is_mounted && return 0
            mount -t tmpfs -o "size=$((SIZE_MIB * 2 + 256))m" kvfs-bench-tmpfs "$MNT" 2>>"$logf"
            return ;;
        kvfs-*)         "$KVFS_RUN" -f -o "codec=${t#kvfs-}" "$back" "$MNT" >>"$logf" 2>&1 & ;;
        passthrough)    "$BUILD/passthrough" -f "$MNT" >>"$logf" 2>&1 & ;;
        passthrough_ll) "$BUILD/passthrough_ll" -f -o "source=$back" "$MNT" >>"$logf" 2>&1 & ;;
    esac
    DPID=$!
    for ((i = 0; i < 400; i++)); do        # up to 20 s
        if mountpoint -q "$MNT" 2>/dev/null; then return 0; fi
        if ! kill -0 "$DPID" 2>/dev/null; then
            wait "$DPID" 2>/dev/null; DAEMON_RC=$?; DPID=""
            log "ERROR: ${LABEL[$t]} exited (rc=$DAEMON_RC) before mounting; log: $logf"
            force_unmount
            return 1
        fi
        sleep 0.05
    done
    log "ERROR: ${LABEL[$t]} did not mount within 20 s; log: $logf"
    stop_daemon
    return 1
}

# umount_target TARGET: unmount a FUSE target and wait for its daemon (sets
# DAEMON_RC); tmpfs is unmounted only with --final, direct never.
umount_target() {
    local t=$1
    DAEMON_RC=0
    case "$t" in
        direct) return 0 ;;
        tmpfs) [ "${2:-}" = --final ] && force_unmount; return 0 ;;
        *) stop_daemon ;;
    esac
}

# dir_of TARGET BACKING: the directory that holds the test files
dir_of() {
    case "$1" in
        passthrough) echo "$MNT$2" ;;      # the high-level example mirrors /
        direct)      echo "$2" ;;
        *)           echo "$MNT" ;;
    esac
}

# --------------------------------------------------------------- results ----
record() {              # record SECTION METRIC TARGET JOBS RUN VALUE UNIT
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "${TID[$3]}" "$4" "$5" "$6" "$7" >> "$RAW"
}
info() {                # info TARGET KEY VALUE (note: appended; others: last wins)
    printf '%s\t%s\t%s\n' "${TID[$1]}" "$2" "$3" >> "$INFO"
}
note() {                # note TARGET TEXT
    local t=$1; shift
    info "$t" note "$*"
    log "NOTE ${LABEL[$t]}: $*"
}

# timed_dd_write DIR: 1 job writes DIR/f (SIZE), then 2 jobs write DIR/f.0 and
# DIR/f.1 (SIZE/2 each) at the same time; prints "ns1 ns2" or returns 1.
timed_dd_write() {
    local d=$1 logf=$2 t0 t1 t2 t3 rc0 rc1 rc
    cat "$SRC" > /dev/null; sync; sleep 1
    t0=$(now_ns)
    timeout "$OP_TIMEOUT" dd if="$SRC" of="$d/f" bs=1M iflag=fullblock conv=fsync status=none 2>>"$logf"
    rc=$?; t1=$(now_ns)
    [ "$rc" -eq 0 ] || { echo "1-job write dd rc=$rc"; return 1; }
    sync; sleep 1
    t2=$(now_ns)
    timeout "$OP_TIMEOUT" dd if="$SRC" of="$d/f.0" bs=1M count="$HALF_MIB" iflag=fullblock conv=fsync status=none 2>>"$logf" &
    local p0=$!
    timeout "$OP_TIMEOUT" dd if="$SRC" of="$d/f.1" bs=1M skip="$HALF_MIB" count="$HALF_MIB" iflag=fullblock conv=fsync status=none 2>>"$logf" &
    local p1=$!
    wait "$p0"; rc0=$?
    wait "$p1"; rc1=$?
    t3=$(now_ns)
    [ "$rc0" -eq 0 ] && [ "$rc1" -eq 0 ] || { echo "2-job write dd rc=$rc0,$rc1"; return 1; }
    echo "$((t1 - t0)) $((t3 - t2))"
}

# fio_read NAME RW BS TIME_BASED FILE... : one fio run, one job per file, psync,
# buffered, no cache invalidation, aggregate figures (terse v3: field 5 error,
# 6 KiB read, 7 KiB/s, 8 IOPS); prints "bw_bytes iops io_bytes" or returns 1.
fio_read() {
    local name=$1 rw=$2 bs=$3 tb=$4 f j=0 size out
    shift 4
    out="$LOGDIR/fio-$name.terse"
    local -a args=(--output-format=terse --terse-version=3 "--output=$out" --ioengine=psync --direct=0
                   --invalidate=0 --readonly --group_reporting "--rw=$rw" "--bs=$bs")
    [ "$tb" = 1 ] && args+=(--time_based "--runtime=$RAND_S")
    for f in "$@"; do
        size=$(stat -c %s "$f" 2>/dev/null) || return 1
        args+=("--name=j$j" "--filename=$f" "--size=$size")
        j=$((j + 1))
    done
    timeout "$OP_TIMEOUT" fio "${args[@]}" >>"$LOGDIR/fio-stderr.log" 2>&1 || return 1
    awk -F';' '$1 == 3 && NF > 10 { n++; if ($5 != 0) bad = 1; printf "%.0f %s %.0f\n", $7 * 1024, $8, $6 * 1024 }
               END { exit (n != 1 || bad) }' "$out"
}

# seq_read SECTION TARGET JOBS RUN FILES... : a timed cold or warm sequential read
kvfs_read_bytes() {     # bytes kvfs has answered READ requests with (its stats)
    awk '$1 == "kvfs_read_bytes_total" { print $2; exit }' "$MNT/.kvfs/stats" 2>/dev/null
}

# via_daemon T KEY D0 IO: note how many of the IO bytes fio read kvfs's daemon
# served since its counter read D0 (the rest came from the kernel page cache).
via_daemon() {
    local t=$1 key=$2 d0=$3 io=$4 d1
    [[ "$t" == kvfs-* ]] && [ -n "$d0" ] || return 0
    d1=$(kvfs_read_bytes)
    [ -n "$d1" ] || return 0
    info "$t" "add:${key}_io" "$io"
    info "$t" "add:${key}_daemon" "$((d1 - d0))"
}

seq_read() {
    local section=$1 t=$2 jobs=$3 r=$4 want out bw iops io d0=""
    shift 4
    want=$SIZE_BYTES
    [[ "$t" == kvfs-* ]] && d0=$(kvfs_read_bytes)
    if ! out=$(fio_read "$t-run$r-$section-$jobs" read 1M 0 "$@"); then
        note "$t" "run $r: $section, $jobs job(s): fio failed (see $LOGDIR/fio-stderr.log)"; return 1
    fi
    read -r bw iops io <<< "$out"
    if [ "$io" != "$want" ]; then
        note "$t" "run $r: $section, $jobs job(s): read $io of $want bytes"; return 1
    fi
    via_daemon "$t" "${section%_read}" "$d0" "$io"
    record "$section" read "$t" "$jobs" "$r" "$(awk -v b="$bw" 'BEGIN { printf "%.0f", b / 1e6 }')" MB/s
}

rand_read() {           # rand_read SECTION BS T JOBS RUN FILES...
    local section=$1 bs=$2 t=$3 jobs=$4 r=$5 out bw iops io d0=""
    shift 5
    [[ "$t" == kvfs-* ]] && d0=$(kvfs_read_bytes)
    if ! out=$(fio_read "$t-run$r-$section-$jobs" randread "$bs" 1 "$@"); then
        note "$t" "run $r: $section, $jobs job(s): fio failed (see $LOGDIR/fio-stderr.log)"; return 1
    fi
    read -r bw iops io <<< "$out"
    via_daemon "$t" "$section" "$d0" "$io"
    if [ "$bs" = 4k ]; then
        record "$section" iops "$t" "$jobs" "$r" "$(awk -v x="$iops" 'BEGIN { printf "%.1f", x / 1000 }')" kIOPS
    else
        record "$section" read "$t" "$jobs" "$r" "$(awk -v b="$bw" 'BEGIN { printf "%.0f", b / 1e6 }')" MB/s
    fi
}

# cold TARGET BACK LOGF: make the files cold: FUSE targets are unmounted (kvfs
# drops its DRAM tier), caches dropped, then remounted.
cold() {
    local t=$1 back=$2 logf=$3
    umount_target "$t"
    [ "$DAEMON_RC" -eq 0 ] || note "$t" "daemon exit rc=$DAEMON_RC at unmount"
    drop_caches
    mount_target "$t" "$back" "$logf"
}

# rand_reads TARGET BACK LOGF RUN JOBS FILES...: the 4 KiB and 64 KiB random
# reads, each from a cold start with --rand-state cold.
rand_reads() {
    local t=$1 back=$2 logf=$3 r=$4 jobs=$5 bs
    shift 5
    for bs in 4k 64k; do
        if [ "$RAND_STATE" = cold ] && ! cold "$t" "$back" "$logf"; then
            note "$t" "run $r: remount failed"; return 1
        fi
        rand_read "rand_$bs" "$bs" "$t" "$jobs" "$r" "$@"
    done
}

declare -A VERIFIED=()

# run_one TARGET RUN
run_one() {
    local t=$1 r=$2 back logf d ns ns1 ns2 out
    back="$WORKDIR/back-$t"
    logf="$LOGDIR/$t-run$r.log"
    : > "$logf"
    rm -rf "$back"; mkdir -p "$back"
    log "run $r: ${LABEL[$t]}: write ($SIZE_MIB MiB by 1 job, then 2 x $HALF_MIB MiB by 2 jobs)"
    if ! mount_target "$t" "$back" "$logf"; then
        note "$t" "run $r: mount failed"; log_tail "$logf"; rm -rf "$back"; return 1
    fi
    d=$(dir_of "$t" "$back")
    if ! ns=$(timed_dd_write "$d" "$logf"); then
        note "$t" "run $r: write failed: $ns"; log_tail "$logf"
        umount_target "$t" --final; rm -rf "$back"; return 1
    fi
    read -r ns1 ns2 <<< "$ns"
    record seq_write write "$t" 1 "$r" "$(mbps "$SIZE_BYTES" "$ns1")" MB/s
    record seq_write write "$t" 2 "$r" "$(mbps "$SIZE_BYTES" "$ns2")" MB/s

    # 2 jobs: cold, warm, random reads; then the same with 1 job.
    log "run $r: ${LABEL[$t]}: reads, 2 jobs"
    if ! cold "$t" "$back" "$logf"; then
        note "$t" "run $r: remount failed"; log_tail "$logf"; rm -rf "$back"; return 1
    fi
    case "$t" in
        direct) info "$t" store_mib "$(du -sb "$back" | awk '{ printf "%.1f", $1 / 1048576 }')" ;;
        tmpfs)  info "$t" store_mib "$(du -sb "$MNT" | awk '{ printf "%.1f", $1 / 1048576 }')" ;;
        *)      info "$t" store_mib "$(du -sb "$back" | awk '{ printf "%.1f", $1 / 1048576 }')"
                info "$t" read_ahead_kb "$(cat "/sys/class/bdi/$(mountpoint -d "$MNT")/read_ahead_kb" 2>/dev/null || echo '?')" ;;
    esac
    seq_read cold_read "$t" 2 "$r" "$d/f.0" "$d/f.1"
    seq_read warm_read "$t" 2 "$r" "$d/f.0" "$d/f.1"
    rand_reads "$t" "$back" "$logf" "$r" 2 "$d/f.0" "$d/f.1" || { log_tail "$logf"; rm -rf "$back"; return 1; }

    log "run $r: ${LABEL[$t]}: reads, 1 job"
    if ! cold "$t" "$back" "$logf"; then
        note "$t" "run $r: remount failed"; log_tail "$logf"; rm -rf "$back"; return 1
    fi
    seq_read cold_read "$t" 1 "$r" "$d/f"
    seq_read warm_read "$t" 1 "$r" "$d/f"
    rand_reads "$t" "$back" "$logf" "$r" 1 "$d/f" || { log_tail "$logf"; rm -rf "$back"; return 1; }

    if [ -z "${VERIFIED[$t]:-}" ]; then     # correctness, once per target, untimed
        # cmp reads the mount through dd in 1 MiB requests (cmp's own small
        # reads cost the high-level passthrough a GETATTR each).
        if out=$(timeout "$OP_TIMEOUT" cmp <(dd if="$d/f" bs=1M status=none) "$SRC" 2>&1) &&
           out=$(timeout "$OP_TIMEOUT" cmp -n "$HALF_BYTES" <(dd if="$d/f.0" bs=1M status=none) "$SRC" 2>&1) &&
           out=$(timeout "$OP_TIMEOUT" cmp -n "$HALF_BYTES" <(dd if="$d/f.1" bs=1M status=none) "$SRC" 0 "$HALF_BYTES" 2>&1) &&
           [ "$(stat -c %s "$d/f.0")" = "$HALF_BYTES" ] && [ "$(stat -c %s "$d/f.1")" = "$HALF_BYTES" ]; then
            VERIFIED[$t]=ok
        else
            VERIFIED[$t]=MISMATCH
            note "$t" "run $r: cmp: ${out:-timeout or wrong size}"
        fi
        info "$t" cmp "${VERIFIED[$t]}"
    fi
    umount_target "$t" --final
    [ "$DAEMON_RC" -eq 0 ] || note "$t" "run $r: daemon exit rc=$DAEMON_RC at the last unmount"
    rm -rf "$back"
    return 0
}

# ----------------------------------------------------------------- data ----
# make_src: SRC = SIZE of real KV tensors (every *.f16 and *.bf16 file under
# KV_DIR, sorted by path, concatenated over and over), or of random bytes.
make_src() {
    local -a files=()
    local f per reps i desc
    mkdir -p "$WORKDIR/data"
    if [ "$DATA" = random ]; then
        SRC="$WORKDIR/data/random-${SIZE_MIB}M.bin"
        desc="random bytes from /dev/urandom (incompressible)"
    else
        SRC="$WORKDIR/data/kv-${SIZE_MIB}M.bin"
        [ -d "$KV_DIR" ] || die "--kv $KV_DIR: no such directory"
        KV_DIR=$(cd "$KV_DIR" && pwd -P)
        while IFS= read -r f; do files+=("$f"); done < <(find "$KV_DIR" -type f \( -name '*.f16' -o -name '*.bf16' \) | sort)
        [ ${#files[@]} -gt 0 ] || die "no *.f16 / *.bf16 KV tensors under $KV_DIR"
        per=$(cat "${files[@]}" | wc -c)
        desc="real KV tensors: the ${#files[@]} *.f16/*.bf16 files under $KV_DIR ($per bytes, sha256 $(cat "${files[@]}" | sha256sum | cut -c1-12)), concatenated in path order over and over"
    fi
    DATA_DESC=$desc
    if [ -f "$SRC" ] && [ "$(stat -c %s "$SRC")" = "$SIZE_BYTES" ] &&
       [ "$(cat "$SRC.desc" 2>/dev/null)" = "$desc" ]; then
        return 0
    fi
    log "building $SIZE_MIB MiB of $DATA data in $SRC"
    rm -f "$SRC" "$SRC.desc"
    if [ "$DATA" = random ]; then
        dd if=/dev/urandom of="$SRC.tmp" bs=1M count="$SIZE_MIB" iflag=fullblock status=none
    else
        reps=$(( (SIZE_BYTES + per - 1) / per ))
        for ((i = 0; i < reps; i++)); do cat "${files[@]}"; done | head -c "$SIZE_BYTES" > "$SRC.tmp"
    fi
    [ "$(stat -c %s "$SRC.tmp" 2>/dev/null)" = "$SIZE_BYTES" ] && mv "$SRC.tmp" "$SRC" || die "cannot create $SRC"
    echo "$desc" > "$SRC.desc"
}

# ----------------------------------------------------------------- main ----
T_START=$(date +%s)
mkdir -p "$BUILD" "$LOGDIR"
bench_clear_stale_mount
rm -rf "$WORKDIR"/back-* "$LOGDIR"/fio-*.terse "$LOGDIR/fio-stderr.log"
: > "$RAW"; : > "$INFO"

log "building libfuse examples in $BUILD"
build_passthroughs "$BUILD" "$LOGDIR"

# The daemon under test is a copy taken now, so that a rebuild of build/kvfs
# during the run cannot mix two daemons into one table.
KVFS_OK=1
if [ -x "$KVFS" ] && [ -f "$KVFS" ]; then
    KVFS_DESC="$(kvfs_msg); run from a copy taken at the start"
    cp "$KVFS" "$BUILD/kvfs.tmp" && mv "$BUILD/kvfs.tmp" "$BUILD/kvfs" || die "cannot copy $KVFS to $BUILD"
    KVFS_RUN="$BUILD/kvfs"
else
    KVFS_OK=0
fi
for t in "${want[@]}"; do
    if [[ "$t" == kvfs-* ]] && [ "$KVFS_OK" = 0 ]; then
        info "$t" note "skipped: kvfs binary not found or not executable at $KVFS"
        log "skipping $t: no kvfs binary at $KVFS"
        continue
    fi
    TARGETS+=("$t")
done
[ ${#TARGETS[@]} -gt 0 ] || die "no targets to run"

make_src
log "data: $DATA_DESC"
MACHINE_MD=$(machine_md)        # at the start: load average, commit, daemon
log "targets: ${TARGETS[*]}; $SIZE_MIB MiB, $RUNS run(s), random reads ${RAND_S} s each, $RAND_STATE"

n=${#TARGETS[@]}
for ((r = 1; r <= RUNS; r++)); do
    for ((i = 0; i < n; i++)); do
        t=${TARGETS[$(((i + r - 1) % n))]}
        run_one "$t" "$r"
    done
done
T_END=$(date +%s)

# --------------------------------------------------------------- report ----
{
    printf 'section\tmetric\ttarget\tjobs\trun\tvalue\tunit\n'
    python3 - "$RAW" "$(for t in "${ALL_TARGETS[@]}"; do echo "${TID[$t]}"; done)" <<'PY'
import sys
order_s = ["seq_write", "cold_read", "warm_read", "rand_4k", "rand_64k"]
order_t = sys.argv[2].split()
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
rows.sort(key=lambda x: (order_s.index(x[0]), order_t.index(x[2]), int(x[3]), int(x[4])))
for x in rows:
    print("\t".join(x))
PY
} > "$TSV.tmp" && mv "$TSV.tmp" "$TSV"

{
    echo "## Throughput (fio): kvfs vs libfuse passthroughs, the backing directory and tmpfs"
    echo
    echo "\`tests/bench/bench_fio.sh\`$([ "$QUICK" = 1 ] && echo " --quick"), $(date -u '+%Y-%m-%d %H:%M UTC'): $SIZE_MIB MiB, $RUNS run(s) per target, targets interleaved with the order rotated every run; random reads ${RAND_S} s each; $((T_END - T_START)) s in all."
    echo
    echo "$MACHINE_MD"
    echo "* load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "Data: $DATA_DESC."
    echo
    echo "Method: writes are timed \`dd bs=1M iflag=fullblock conv=fsync\` from the data file (warm in the page cache): 1 job writes \`f\` ($SIZE_MIB MiB); 2 jobs are two dd processes writing \`f.0\` and \`f.1\` ($HALF_MIB MiB each, the two halves of the data) at once, timed until both have finished. Reads are fio $(fio --version | sed 's/^fio-//'), \`ioengine=psync direct=0 invalidate=0 readonly\`; 1 job reads \`f\`, 2 jobs read one file each (\`f.0\`, \`f.1\`), aggregate figures. Cold: FUSE targets unmounted (kvfs's DRAM tier empties), \`sync; echo 3 > /proc/sys/vm/drop_caches\`, remounted; the backing dir only drops caches; tmpfs cannot be made cold (its cold read is a page-cache read). Warm: the same read again at once (kvfs keeps its files' kernel page cache across opens, so its warm reads are page-cache reads; the passthroughs drop theirs at every open, so theirs go through the daemon to the backing file's page cache). Random reads (\`randread\`, fio's default random map, seed and fadvise hint, ${RAND_S} s time-based) $(if [ "$RAND_STATE" = warm ]; then echo "follow the warm read without dropping anything (--rand-state warm): what each target then serves from its caches: for kvfs its page cache, for the passthroughs (cache=auto, and the high-level example's defaults) the daemon until fio has touched a page once"; else echo "each start cold, as the cold read does (--rand-state cold)"; fi). kvfs runs with \`-f -o codec=C\` and every other option at its default (ram=128M, chunk=1M, shuffle=auto); the passthroughs as shipped (multithreaded, default options), passthrough_ll with \`-o source=BACKING\`, all backing directories on the work dir's disk. MB/s = 10^6 bytes/s; each cell is the median (min–max) over the runs; the ratio is the median over the faster passthrough's median for that figure (bar ${BAR}x: PASS, else the ratio)."
    echo
    python3 - "$TSV" "$INFO" "$BAR" "$SIZE_MIB" "$(for t in "${TARGETS[@]}"; do printf '%s\t%s\n' "${TID[$t]}" "${LABEL[$t]}"; done)" <<'PY'
import sys, statistics
tsv, infof, bar, size_mib = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
targets, label = [], {}
for l in sys.argv[5].splitlines():
    t, lab = l.split("\t")
    targets.append(t); label[t] = lab
titles = {"seq_write": "Sequential write, 1 MiB requests, with fsync",
          "cold_read": "Cold sequential read, 1 MiB requests",
          "warm_read": "Warm sequential read, 1 MiB requests",
          "rand_4k": "Random 4 KiB reads", "rand_64k": "Random 64 KiB reads"}
vals, units = {}, {}
for l in open(tsv):
    x = l.rstrip("\n").split("\t")
    if x[0] == "section":
        continue
    vals.setdefault((x[0], x[2], x[3]), []).append(float(x[5]))
    units[x[0]] = x[6]
info, notes = {}, {}
for l in open(infof):
    t, k, v = l.rstrip("\n").split("\t", 2)
    if k == "note":
        notes.setdefault(t, []).append(v)
    elif k.startswith("add:"):
        info[(t, k)] = info.get((t, k), 0) + float(v)
    else:
        info[(t, k)] = v
def med(t): return statistics.median(t) if t else None
def fmt(v, unit):
    if v is None: return "–"
    return f"{v:.1f}" if unit == "kIOPS" else f"{v:.0f}"
def cell(s, t, j):
    v = vals.get((s, t, j), [])
    if not v: return "–"
    m = fmt(med(v), units[s])
    return m if len(v) == 1 else f"{m} ({fmt(min(v), units[s])}–{fmt(max(v), units[s])})"
def best(s, j):
    c = [(med(vals[(s, p, j)]), p) for p in ("passthrough", "passthrough_ll") if vals.get((s, p, j))]
    return max(c) if c else (None, None)
def ratio(s, t, j):
    b, _ = best(s, j); v = vals.get((s, t, j))
    if not v or not b: return None
    return med(v) / b
def rcell(s, t, j):
    x = ratio(s, t, j)
    if x is None: return "–"
    if t.startswith("kvfs"):
        return f"{x:.2f}x **PASS**" if x >= bar else f"{x:.2f}x"
    return f"{x:.2f}x"
sections = [s for s in titles if any(k[0] == s for k in vals)]
for s in sections:
    print(f"### {titles[s]} ({units[s]})\n")
    print("| target | 1 job | vs best passthrough | 2 jobs | vs best passthrough |")
    print("|---|---|---|---|---|")
    for t in targets:
        print(f"| {label.get(t, t)} | {cell(s, t, '1')} | {rcell(s, t, '1')} | {cell(s, t, '2')} | {rcell(s, t, '2')} |")
    print()
kv = [t for t in targets if t.startswith("kvfs")]
if kv and any(best(s, j)[0] for s in sections for j in "12"):
    print(f"### kvfs against the faster passthrough (median ratio; bar {bar:.1f}x)\n")
    print("| figure | jobs | " + " | ".join(label[t] for t in kv) + " | faster passthrough |")
    print("|---|---|" + "---|" * len(kv) + "---|")
    npass = ntot = 0
    short = []
    for s in sections:
        for j in "12":
            b, p = best(s, j)
            if b is None: continue
            cells = []
            for t in kv:
                x = ratio(s, t, j)
                if x is None:
                    cells.append("–"); continue
                ntot += 1
                if x >= bar:
                    npass += 1; cells.append(f"PASS ({x:.2f}x)")
                else:
                    cells.append(f"{x:.2f}x"); short.append((x, t, s, j))
            print(f"| {titles[s].split(',')[0]} | {j} | " + " | ".join(cells) + f" | {p} {fmt(b, units[s])} {units[s]} |")
    print()
    print(f"kvfs reaches {bar:.1f}x the faster passthrough in {npass} of {ntot} figures.", end="")
    if short:
        print(" Short of it: " + "; ".join(f"{label[t]}, {titles[s].split(',')[0]}, {j} job{'s' if j == '2' else ''} {x:.2f}x ({(1 - x) * 100:.0f} % short)" for x, t, s, j in sorted(short)) + ".")
    else:
        print()
    print()
print("Per target: bytes stored after the writes (f + f.0 + f.1, twice the data; the whole backing directory, index included), the mount's readahead, the share of the bytes fio read that kvfs's daemon served (from `kvfs_read_bytes_total`; the rest came from the kernel page cache, which kvfs keeps across opens) in the cold, warm, random 4 KiB and random 64 KiB reads (random reads that outrun the file size re-read it, mostly from the page cache), the check of the data read back:\n")
print("| target | stored MiB | logical / stored | read_ahead_kb | via daemon: cold / warm / rand 4k / rand 64k | cmp | notes |")
print("|---|---|---|---|---|---|---|")
def via(t, key):
    io, dm = info.get((t, f"add:{key}_io")), info.get((t, f"add:{key}_daemon"))
    return f"{100 * dm / io:.0f} %" if io else "–"
for t in targets:
    st = info.get((t, "store_mib"))
    rat = f"{2 * size_mib / float(st):.3f}" if st and float(st) > 0 else "–"
    vias = " / ".join(via(t, k) for k in ("cold", "warm", "rand_4k", "rand_64k")) if t.startswith("kvfs") else "–"
    print(f"| {label.get(t, t)} | {st or '–'} | {rat} | {info.get((t, 'read_ahead_kb'), '–')} | {vias} | {info.get((t, 'cmp'), 'not checked')} | {'; '.join(notes.get(t, []))} |")
for t, ns in notes.items():
    if t not in targets:
        print(f"| {t} | – | – | – | – | – | {'; '.join(ns)} |")
print()
PY
    echo "Per-run values: \`$TSV\` (columns section, metric, target, jobs, run, value, unit); daemon logs and fio's terse output in \`$LOGDIR\`."
} > "$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
cat "$REPORT"
log "results: $TSV, $REPORT ($((T_END - T_START)) s)"
