#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench_meta.sh - metadata rates of kvfs against libfuse's passthrough and
# passthrough_ll examples and the backing directory: create/stat/unlink of
# many 64 KiB files laid out as contexts, listing a namespace of many
# contexts, and (through bench_policy.sh) remount time with a 1M-file index.
#
# Usage: bash tests/bench/bench_meta.sh [--dir WORKDIR] [--results DIR] [--quick] [--runs N]
#            [--kvfs PATH] [--files N] [--layers N] [--file-size BYTES]
#            [--list-contexts N] [--list-files N] [--index-files N]
#            [--sections LIST] [--rss-limit MiB] [--timeout SEC]
# See tests/bench/README.md for the method.  Must run as root (drop_caches).

# shellcheck disable=SC2034  # USAGE_END, DPID, RSS_LIMIT_KB, DAEMON_WAIT_S are read by lib.sh and lib_extra.sh
set -u -o pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"
# shellcheck source=lib_extra.sh
. "$SCRIPT_DIR/lib_extra.sh"

WORKDIR=/var/tmp/kvfs-bench-meta
RESULTS=""
QUICK=0
RUNS=""                 # default 3, --quick 1
KVFS="$REPO_ROOT/build/kvfs"
FILES=""                # default 100000, --quick 5000
LAYERS=40               # files per context
FSZ=65536               # bytes written to each file
LIST_CTX=""             # default 10000, --quick 2000
LIST_FILES=4            # files per context in the listing tree
LIST_FSZ=4096
INDEX_FILES=""          # default 1000000, --quick 100000
SECTIONS=meta,list,remount
RSS_LIMIT_MIB=""
OP_TIMEOUT=1800
BAR=0.5                 # kvfs must reach BAR x the faster passthrough
USAGE_END=12

while [ $# -gt 0 ]; do
    case "$1" in
        --dir)           WORKDIR=${2:?}; shift 2 ;;
        --results)       RESULTS=${2:?}; shift 2 ;;
        --quick)         QUICK=1; shift ;;
        --runs)          RUNS=${2:?}; shift 2 ;;
        --kvfs)          KVFS=${2:?}; shift 2 ;;
        --files)         FILES=${2:?}; shift 2 ;;
        --layers)        LAYERS=${2:?}; shift 2 ;;
        --file-size)     FSZ=${2:?}; shift 2 ;;
        --list-contexts) LIST_CTX=${2:?}; shift 2 ;;
        --list-files)    LIST_FILES=${2:?}; shift 2 ;;
        --index-files)   INDEX_FILES=${2:?}; shift 2 ;;
        --sections)      SECTIONS=${2:?}; shift 2 ;;
        --rss-limit)     RSS_LIMIT_MIB=${2:?}; shift 2 ;;
        --timeout)       OP_TIMEOUT=${2:?}; shift 2 ;;
        -h|--help)       usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done
if [ "$QUICK" = 1 ]; then
    : "${FILES:=5000}" "${LIST_CTX:=2000}" "${INDEX_FILES:=100000}" "${RUNS:=1}"
else
    : "${FILES:=100000}" "${LIST_CTX:=10000}" "${INDEX_FILES:=1000000}" "${RUNS:=3}"
fi
: "${RESULTS:=$WORKDIR/results}"
for v in RUNS FILES LAYERS LIST_CTX LIST_FILES INDEX_FILES OP_TIMEOUT; do
    posint "${!v}" || die "--$(echo "$v" | tr 'A-Z_' 'a-z-') must be a positive integer"
done
[[ "$FSZ" =~ ^[0-9]+$ ]] || die "--file-size must be a number of bytes"
[ -z "$RSS_LIMIT_MIB" ] || posint "$RSS_LIMIT_MIB" || die "--rss-limit must be a positive integer (MiB)"
[ "$LAYERS" -le 100 ] && [ "$LIST_FILES" -le 100 ] || die "at most 100 files per context"
[ $((FILES % LAYERS)) -eq 0 ] || die "--files ($FILES) must be a multiple of --layers ($LAYERS)"
[[ "$SECTIONS" =~ ^(meta|list|remount)(,(meta|list|remount))*$ ]] || die "--sections: a list of meta, list, remount"
want() { [[ ",$SECTIONS," == *",$1,"* ]]; }
NCTX=$((FILES / LAYERS))

bench_check_env gcc pkg-config fusermount3 mountpoint timeout awk find ls du sha256sum
bench_need_kvfs
bench_check_workdir
x_snapshot_kvfs
bench_results_dir

MNT="$WORKDIR/mnt"
BUILD="$WORKDIR/build"
LOGDIR="$WORKDIR/logs"
POOL="$WORKDIR/kv-pool-16M.bin"
GUARD_FLAG="$WORKDIR/guard.killed"
OPS="$BUILD/bench_meta_ops"
x_describe
bench_rss_limit

DPID=""
DAEMON_WAIT_S=60
on_daemon_stopped() { rss_guard_stop; }
bench_traps

mkdir -p "$BUILD" "$LOGDIR"
bench_clear_stale_mount
rm -rf "$WORKDIR"/back-* "$WORKDIR"/list-* "$GUARD_FLAG"
tsv_init "$RESULTS/bench_meta.tsv"

log "building the libfuse examples and bench_meta_ops in $BUILD"
build_passthroughs "$BUILD" "$LOGDIR"
gcc -O2 -Wall -Wextra -o "$OPS" "$SCRIPT_DIR/bench_meta_ops.c" > "$LOGDIR/build-ops.log" 2>&1 ||
    { cat "$LOGDIR/build-ops.log" >&2; die "building bench_meta_ops failed"; }
x_kv_pool "$POOL" 16

TARGETS=(kvfs passthrough passthrough_ll backing)
declare -A LABEL=([kvfs]="kvfs (default options)" [passthrough]="passthrough" [passthrough_ll]="passthrough_ll" [backing]="backing dir (ext4, no FUSE)")
declare -A NOTES=()
declare -A OKRUNS=()
note() { local s=$1; shift; NOTES[$s]="${NOTES[$s]:+${NOTES[$s]}; }$*"; log "NOTE $s: $*"; }
rate() { awk -v c="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.0f", c * 1e9 / n }'; }

# tstart TARGET BACK LOGFILE: mount TARGET over backing directory BACK
# (nothing to do for the backing directory itself)
tstart() {
    local t=$1 back=$2 logf=$3
    case "$t" in
        kvfs)    x_start "$logf" "$KVFS" -f "$back" "$MNT" ;;
        passthrough)      x_start "$logf" "$BUILD/passthrough" -f "$MNT" ;;
        passthrough_ll)   x_start "$logf" "$BUILD/passthrough_ll" -f -o "source=$back" "$MNT" ;;
        backing) return 0 ;;
    esac
}
tstop() {               # tstop TARGET NOTE-SECTION: unmount, note a bad exit
    [ "$1" = backing ] && return 0
    stop_daemon
    [ "$DAEMON_RC" -eq 0 ] || note "$2" "${LABEL[$1]}: daemon exit rc=$DAEMON_RC $(x_guard_note)"
}
root_of() {             # root_of TARGET BACK -> the backing dir's root as the target shows it
    case "$1" in
        kvfs|passthrough_ll) echo "$MNT" ;;
        passthrough)         echo "$MNT$2" ;;        # the high-level passthrough mirrors /
        backing)    echo "$2" ;;
    esac
}
# ops PHASE DIR NCTX NFILES FSZ LOGF -> sets OUT_NS (and OUT_RMDIR_NS, OUT_MKDIR_NS); 1 on failure
ops() {
    local out rc
    out=$(timeout "$OP_TIMEOUT" "$OPS" "$1" "$2" "$3" "$4" "$5" "$POOL" 2>>"$6")
    rc=$?
    OUT_NS=$(sed -n 's/^ns=//p' <<< "$out")
    OUT_RMDIR_NS=$(sed -n 's/^rmdir_ns=//p' <<< "$out")
    OUT_MKDIR_NS=$(sed -n 's/^mkdir_ns=//p' <<< "$out")
    [ "$rc" -eq 0 ] && [ -n "$OUT_NS" ] || { OPS_RC=$rc; return 1; }
}

# ============================================== 1. create / stat / unlink ====
meta_run() {            # meta_run TARGET RUN
    local t=$1 r=$2 back="$WORKDIR/back-$1" logf="$LOGDIR/meta-$1-run$2.log" ns t0 t1 v
    : > "$logf"
    rm -rf "$back"; mkdir -p "$back"
    log "run $r: meta ${LABEL[$t]}: create $FILES files ($NCTX contexts x $LAYERS), stat, unlink"
    fail() { note meta "run $r: ${LABEL[$t]}: $* $(x_guard_note)"; log_tail "$logf"; tstop "$t" meta; rm -rf "$back"; return 1; }
    tstart "$t" "$back" "$logf" || { note meta "run $r: ${LABEL[$t]}: mount failed"; log_tail "$logf"; rm -rf "$back"; return 1; }
    ns="$(root_of "$t" "$back")/ns"
    mkdir "$ns" 2>>"$logf" || { fail "mkdir ns failed"; return 1; }
    sync
    ops create "$ns" "$NCTX" "$LAYERS" "$FSZ" "$logf" || { fail "create failed (rc=$OPS_RC)"; return 1; }
    tsv_add meta create "$t" 1 "$r" "$(rate "$FILES" "$OUT_NS")" files/s
    tsv_add info create_mkdir_share "$t" 1 "$r" "$(awk -v a="$OUT_MKDIR_NS" -v b="$OUT_NS" 'BEGIN { printf "%.3f", a / b }')" fraction
    if [ "$t" = kvfs ]; then
        v=$(x_stat_metric kvfs_files)
        [ "${v:-x}" = "$FILES" ] || note meta "run $r: kvfs: kvfs_files=${v:-?} after creating $FILES files"
        tsv_add info daemon_vmhwm_after_create "$t" 1 "$r" "$(awk -v k="$(x_status_kb VmHWM)" 'BEGIN { if (k != "") printf "%.0f", k / 1024 }')" MiB
    fi
    t0=$(now_ns); sync; t1=$(now_ns)
    tsv_add meta create_sync "$t" 1 "$r" "$(rate "$FILES" $((OUT_NS + t1 - t0)))" files/s
    tstop "$t" meta
    tsv_add info store_after_create "$t" 1 "$r" "$(du -sb "$back" | awk '{ printf "%.1f", $1 / 1048576 }')" MiB
    drop_caches
    tstart "$t" "$back" "$logf" || { note meta "run $r: ${LABEL[$t]}: remount failed"; log_tail "$logf"; rm -rf "$back"; return 1; }
    ops stat "$ns" "$NCTX" "$LAYERS" "$FSZ" "$logf" || { fail "cold stat failed (rc=$OPS_RC)"; return 1; }
    tsv_add meta stat_cold "$t" 1 "$r" "$(rate "$FILES" "$OUT_NS")" files/s
    ops stat "$ns" "$NCTX" "$LAYERS" "$FSZ" "$logf" || { fail "warm stat failed (rc=$OPS_RC)"; return 1; }
    tsv_add meta stat_warm "$t" 1 "$r" "$(rate "$FILES" "$OUT_NS")" files/s
    ops unlink "$ns" "$NCTX" "$LAYERS" "$FSZ" "$logf" || { fail "unlink failed (rc=$OPS_RC)"; return 1; }
    tsv_add meta unlink "$t" 1 "$r" "$(rate "$FILES" "$OUT_NS")" files/s
    tsv_add meta rmdir "$t" 1 "$r" "$(rate "$NCTX" "$OUT_RMDIR_NS")" dirs/s
    if [ "$t" = kvfs ]; then
        v=$(x_stat_metric kvfs_files)
        [ "${v:-x}" = 0 ] || note meta "run $r: kvfs: kvfs_files=${v:-?} after unlinking every file"
    fi
    # shellcheck disable=SC2012
    [ "$(ls -A "$ns" | wc -l)" = 0 ] || note meta "run $r: ${LABEL[$t]}: namespace not empty after unlink+rmdir"
    tstop "$t" meta
    rm -rf "$back"
    OKRUNS[meta_$t]=$((${OKRUNS[meta_$t]:-0} + 1))
}

# ================================================== 2. listing contexts ====
LBACK="$WORKDIR/list-back"          # ext4 tree for passthrough, passthrough_ll and backing
LSTORE="$WORKDIR/list-kvfs"         # kvfs store
LENTRIES=$((1 + LIST_CTX + LIST_CTX * LIST_FILES))
LL_EMFILE=0                         # passthrough_ll listings that ran out of fds
list_setup() {
    local logf="$LOGDIR/list-setup.log"
    : > "$logf"
    rm -rf "$LBACK" "$LSTORE"
    mkdir -p "$LBACK/ns"
    log "list: creating $LIST_CTX contexts x $LIST_FILES files of $LIST_FSZ bytes on ext4"
    ops create "$LBACK/ns" "$LIST_CTX" "$LIST_FILES" "$LIST_FSZ" "$logf" || { note list "creating the ext4 tree failed"; return 1; }
    tsv_add info list_setup_create backing 1 1 "$(rate $((LIST_CTX * LIST_FILES)) "$OUT_NS")" files/s
    log "list: creating the same tree through kvfs"
    tstart kvfs "$LSTORE" "$logf" || { note list "kvfs mount failed"; log_tail "$logf"; return 1; }
    if ! mkdir "$MNT/ns" || ! ops create "$MNT/ns" "$LIST_CTX" "$LIST_FILES" "$LIST_FSZ" "$logf"; then
        note list "creating the tree through kvfs failed $(x_guard_note)"; tstop kvfs list; log_tail "$logf"; return 1
    fi
    tsv_add info list_setup_create kvfs 1 1 "$(rate $((LIST_CTX * LIST_FILES)) "$OUT_NS")" files/s
    tstop kvfs list
    sync
}
list_back() { [ "$1" = kvfs ] && echo "$LSTORE" || echo "$LBACK"; }
# list_one TARGET RUN KIND(ls_l|find) DROP(0|1)
list_one() {
    local t=$1 r=$2 kind=$3 drop=$4 back logf="$LOGDIR/list-$1-run$2.log" ns t0 t1 n want metric
    back=$(list_back "$t")
    metric=$kind; [ "$drop" = 1 ] && metric="${kind}_dropcaches"
    tstart "$t" "$back" "$logf" || { note list "run $r: ${LABEL[$t]}: mount failed"; log_tail "$logf"; return 1; }
    [ "$drop" = 1 ] && drop_caches
    ns="$(root_of "$t" "$back")/ns"
    t0=$(now_ns)
    if [ "$kind" = ls_l ]; then
        n=$(timeout "$OP_TIMEOUT" ls -l "$ns" 2>>"$logf" | wc -l); want=$((LIST_CTX + 1))   # + "total"
    else
        n=$(timeout "$OP_TIMEOUT" find "$ns" 2>>"$logf" | wc -l); want=$LENTRIES
    fi
    t1=$(now_ns)
    tstop "$t" list
    if [ "$n" != "$want" ]; then
        if [ "$t" = passthrough_ll ] && grep -q 'Too many open files' "$logf"; then
            LL_EMFILE=$((LL_EMFILE + 1))
            log "run $r: passthrough_ll: $kind listed $n of $want lines: Too many open files"
        else
            note list "run $r: ${LABEL[$t]}: $kind listed $n lines, expected $want"
        fi
        return 1
    fi
    if [ "$kind" = ls_l ]; then
        tsv_add list "$metric" "$t" 1 "$r" "$(rate "$LIST_CTX" $((t1 - t0)))" contexts/s
    else
        tsv_add list "$metric" "$t" 1 "$r" "$(rate "$LENTRIES" $((t1 - t0)))" entries/s
    fi
}

# ========================================= 3. remount with a 1M-file index ====
# bench_policy.sh section 3 does this; run it and take its per-run values.
POLICY_DIR="$WORKDIR/policy"
remount_section() {
    local out="$LOGDIR/bench_policy.out" rep="$POLICY_DIR/bench_policy.md" k v i vals unit metric key
    # One run more than asked: bench_policy.sh bulk-inserts the files into the
    # index without inode records, and kvfs's first mount of such an index
    # writes one for every inode (what it does once for a store made before
    # inode records existed).  That first mount is reported on its own.
    log "remount: bash bench_policy.sh --sections 3 --files $INDEX_FILES --runs $((RUNS + 1)) (log: $out)"
    bash "$SCRIPT_DIR/bench_policy.sh" --sections 3 --files "$INDEX_FILES" --runs $((RUNS + 1)) --size 8 \
        --kvfs "$KVFS" --dir "$POLICY_DIR" --timeout "$OP_TIMEOUT" > "$out" 2>&1 ||
        note remount "bench_policy.sh exited with status $?"
    [ -f "$rep" ] || { note remount "bench_policy.sh wrote no report ($rep)"; return 1; }
    REMOUNT_RESULT=$(awk -F'|' '$2 ~ /^ 3 $/ { gsub(/^ +| +$/, "", $6); print $6 }' "$rep")
    for k in remount_mount:mount_s:s remount_first:first_read_s:s remount_rss1:vmrss_after_first_read:MiB \
             remount_hwm1:vmhwm_after_first_read:MiB remount_lsR:ls_R_s:s remount_lsR_rate:ls_R:entries/s \
             remount_rss2:vmrss_after_ls_R:MiB; do
        IFS=: read -r key metric unit <<< "$k"
        vals=$(sed -n "s/^\* $key: \[\(.*\)\]$/\1/p" "$rep")
        i=0
        for v in $vals; do
            if [ "$i" -eq 0 ]; then tsv_add remount_upgrade "$metric" kvfs 1 1 "$v" "$unit"
            else tsv_add remount "$metric" kvfs 1 "$i" "$v" "$unit"; fi
            i=$((i + 1))
        done
    done
    grep -q '^\* remount_insert_s' "$rep" && tsv_add info remount_index_insert kvfs 1 1 "$(sed -n 's/^\* remount_insert_s: \[\(.*\)\]$/\1/p' "$rep")" s
    REMOUNT_SEEN=$(sed -n 's/^\* remount_seen: \[\(.*\)\]$/\1/p' "$rep")
}

# ----------------------------------------------------------------- main ----
T_START=$(now_ns)
log "kvfs: $KVFS ($(kvfs_msg)); machine: $MACHINE; load $LOAD0"
if want meta; then
    n=${#TARGETS[@]}
    for ((r = 1; r <= RUNS; r++)); do
        for ((i = 0; i < n; i++)); do meta_run "${TARGETS[$(((i + r - 1) % n))]}" "$r"; done
    done
fi
if want list; then
    if list_setup; then
        n=${#TARGETS[@]}
        for ((r = 1; r <= RUNS; r++)); do
            for kind in ls_l find; do
                for drop in 0 1; do
                    for ((i = 0; i < n; i++)); do list_one "${TARGETS[$(((i + r - 1) % n))]}" "$r" "$kind" "$drop"; done
                done
            done
        done
    fi
    rm -rf "$LBACK" "$LSTORE"
fi
REMOUNT_RESULT=""; REMOUNT_SEEN=""
want remount && remount_section
T_END=$(now_ns)

# --------------------------------------------------------------- report ----
best_pt() {             # best_pt SECTION METRIC -> "median target" of the faster passthrough
    local m bm="" bt="" t
    for t in passthrough passthrough_ll; do
        m=$(med "$1" "$2" "$t")
        [ -n "$m" ] || continue
        if [ -z "$bm" ] || x_ge "$m" "$bm"; then bm=$m; bt=$t; fi
    done
    echo "$bm $bt"
}
row() {                 # row SECTION METRIC DESCRIPTION
    local s=$1 m=$2 d=$3 km bm bt ratio res c=""
    for t in "${TARGETS[@]}"; do c+=" $(cell "$s" "$m" "$t") |"; done
    km=$(med "$s" "$m" kvfs)
    read -r bm bt <<< "$(best_pt "$s" "$m")"
    ratio=$(x_ratio "$km" "$bm")
    if [ -z "$ratio" ]; then res="no data"
    elif x_ge "$ratio" "$BAR"; then res="met"
    else res="MISSED"; fi
    if [ -n "$ratio" ]; then ratio="${ratio}x (vs ${LABEL[$bt]})"; else ratio="–"; fi
    echo "| $d |$c $ratio | $res |"
}
tsv_stats
MD="$RESULTS/bench_meta.md"
{
    echo "## Metadata rates: kvfs vs the libfuse passthroughs (bench_meta.sh)"
    echo
    x_header_lines
    echo
    echo "Backing fs: $DF_LINE. $RUNS runs per measure, targets interleaved (order rotated each run); median (min–max). Total wall time $(( (T_END - T_START) / 1000000000 )) s$([ "$QUICK" = 1 ] && echo "; **--quick sizes**")."
    echo
    echo "Targets: kvfs with default options (\`kvfs -f STORE MNT\`), libfuse 3 \`passthrough\` and \`passthrough_ll\` examples as shipped (built as bench_core.sh builds them), each over a fresh directory on the same disk, and that directory itself without FUSE (reference). Ratio: kvfs median / the faster passthrough's median; target ≥ ${BAR}x."
    if want meta; then
        echo
        echo "**Create, stat, unlink.** Layout as an engine writes it: \`ns/ctxNNNN/layerMM\`, $NCTX contexts × $LAYERS layer files = $FILES files of $FSZ bytes of real KV data ($POOL_DESC). One C process (\`bench_meta_ops\`, in \`ns/\` with relative paths) per phase: *create* = per context mkdir, then per file open(O_CREAT)+one ${FSZ}-byte write+close (mkdirs included in the time); *create+sync* adds the \`sync\` that follows; then unmount, \`drop_caches\`, remount: *stat cold* = stat() of every file; *stat warm* = the same again; *unlink* = unlink() of every file; *rmdir* = rmdir() of the $NCTX emptied contexts. Rates are files (or dirs) per second."
        echo
        echo "| measure | ${LABEL[kvfs]} | ${LABEL[passthrough]} | ${LABEL[passthrough_ll]} | ${LABEL[backing]} | kvfs / best passthrough | ≥ ${BAR}x |"
        echo "|---|---|---|---|---|---|---|"
        row meta create "create files/s"
        row meta create_sync "create + sync, files/s"
        row meta stat_cold "stat (cold: after remount + drop_caches) files/s"
        row meta stat_warm "stat (warm: second pass) files/s"
        row meta unlink "unlink files/s"
        row meta rmdir "rmdir of contexts, dirs/s"
        echo
        echo "Runs ok: $(for t in "${TARGETS[@]}"; do printf '%s %s/%s; ' "${LABEL[$t]}" "${OKRUNS[meta_$t]:-0}" "$RUNS"; done)store size after create (MiB): $(for t in "${TARGETS[@]}"; do printf '%s %s; ' "$t" "$(cell info store_after_create "$t")"; done)kvfs daemon VmHWM after create: $(cell info daemon_vmhwm_after_create kvfs) MiB.${NOTES[meta]:+ Notes: ${NOTES[meta]}.}"
    fi
    if want list; then
        echo
        echo "**Listing $LIST_CTX contexts.** A namespace of $LIST_CTX contexts × $LIST_FILES files of $LIST_FSZ bytes (made once: directly on ext4 for the passthroughs and the backing dir, through the mount for kvfs; not timed). Each measure mounts afresh (cold-ish: the FUSE daemon and the kernel's caches of the mount are empty, the backing disk's page cache is as left) and times \`ls -l ns\` (readdir + a stat of each context; $((LIST_CTX + 1)) lines) or \`find ns\` (every context and file, $LENTRIES entries); the *drop_caches* rows also drop the page cache after mounting. Rates: contexts/s for ls -l, entries/s for find."
        echo
        echo "| measure | ${LABEL[kvfs]} | ${LABEL[passthrough]} | ${LABEL[passthrough_ll]} | ${LABEL[backing]} | kvfs / best passthrough | ≥ ${BAR}x |"
        echo "|---|---|---|---|---|---|---|"
        row list ls_l "\`ls -l\` after remount, contexts/s"
        row list ls_l_dropcaches "\`ls -l\` after remount + drop_caches, contexts/s"
        row list find "\`find\` after remount, entries/s"
        row list find_dropcaches "\`find\` after remount + drop_caches, entries/s"
        [ -z "${NOTES[list]:-}" ] || { echo; echo "Notes: ${NOTES[list]}."; }
        [ "$LL_EMFILE" -eq 0 ] || { echo; echo "passthrough_ll failed $LL_EMFILE listings with EMFILE (\"Too many open files\"; no figure): it keeps an O_PATH fd open for every inode the kernel knows, and $LENTRIES entries pass this machine's RLIMIT_NOFILE ($(ulimit -Sn) soft, $(ulimit -Hn) hard; root cannot raise it here). Those rows compare kvfs with passthrough alone."; }
    fi
    if want remount; then
        echo
        echo "**Remount with a $INDEX_FILES-file index** (bench_policy.sh section 3, run by this script with \`--sections 3 --files $INDEX_FILES --runs $((RUNS + 1))\`: one real 8 MiB file written through kvfs, then $INDEX_FILES empty files in $(( (INDEX_FILES + 999) / 1000 )) context directories bulk-inserted into the SQLite index; each run: \`drop_caches\`, start kvfs, \`cmp\` the real file). The bulk-inserted inodes have no inode records (segment records that \`kvfsctl rebuild\` recovers from) and get none: the store was made by a kvfs whose index notes that its records are complete, so no mount scans for missing ones (a store made before inode records existed is scanned once, at its first mount: see docs/reliability.md). The first run, the first mount after the bulk insert, is shown apart; the medians are of the $RUNS runs after it. No passthrough equivalent: the target is bench_policy's < 5 s."
        echo
        echo "| measure | kvfs, runs 2–$((RUNS + 1)) | first mount after the insert | target | result |"
        echo "|---|---|---|---|---|"
        echo "| kvfs start → mounted, s | $(cell remount mount_s kvfs) | $(cell remount_upgrade mount_s kvfs) | – | info |"
        fr=$(med remount first_read_s kvfs)
        echo "| kvfs start → first read done, s | $(cell remount first_read_s kvfs) | $(cell remount_upgrade first_read_s kvfs) | < 5 s | $( [ -z "$fr" ] && echo "no data" || { x_ge "$fr" 5 && echo MISSED || echo "met ($(x_ratio "$fr" 5)x of the limit)"; }) |"
        echo "| daemon VmRSS after the first read, MiB | $(cell remount vmrss_after_first_read kvfs) | $(cell remount_upgrade vmrss_after_first_read kvfs) | – | info |"
        echo "| \`ls -R\` of all $INDEX_FILES files, entries/s | $(cell remount ls_R kvfs) | $(cell remount_upgrade ls_R kvfs) | – | info |"
        echo "| daemon VmRSS after \`ls -R\`, MiB | $(cell remount vmrss_after_ls_R kvfs) | $(cell remount_upgrade vmrss_after_ls_R kvfs) | – | info |"
        echo
        echo "bench_policy.sh's own verdict (median of all $((RUNS + 1)) runs): ${REMOUNT_RESULT:-none}; entries seen: ${REMOUNT_SEEN:-?}.${NOTES[remount]:+ Notes: ${NOTES[remount]}.} Its full report: \`$POLICY_DIR/bench_policy.md\`."
    fi
} > "$MD.tmp"
mv "$MD.tmp" "$MD"
cat "$MD"
log "results: $RESULTS/bench_meta.tsv, $MD; logs in $LOGDIR"
