#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench_policy.sh - cache-policy benchmark of kvfs: DRAM tier vs cold reads,
# manual eviction rate, and remount time of an index holding 1M files.
#
# Usage: bash tests/bench/bench_policy.sh [--size MiB] [--runs N] [--contexts N]
#            [--files N] [--kvfs PATH] [--dir WORKDIR] [--sections LIST]
#            [--evict-ram SIZE|default] [--rss-limit MiB] [--timeout SEC]
# See tests/bench/README.md for the method.  Must run as root (drop_caches).

set -u -o pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

SIZE_MIB=512
RUNS=3
CONTEXTS=100000
FILES=1000000
KVFS="$REPO_ROOT/build/kvfs"
WORKDIR=/var/tmp/kvfs-bench-policy
SECTIONS=1,2,3
EVICT_RAM=default       # ram= of the eviction mounts ("default": none given)
RSS_LIMIT_MIB=""        # guard: SIGKILL our daemon above this (default: MemTotal/2)
OP_TIMEOUT=1800         # seconds allowed for one timed operation
TIER_RAM=1G             # ram= of the DRAM-tier mounts
FPD=1000                # files per context directory in the 1M-file index
REMOUNT_TARGET=5        # seconds, start of kvfs -> first read done
CTX_FILE=4096           # bytes of the one file of each context (section 2)
REAL_MIB=8              # size of the real file of section 3
USAGE_END=10             # last line of the usage text in the header

while [ $# -gt 0 ]; do
    case "$1" in
        --size)      SIZE_MIB=${2:?}; shift 2 ;;
        --runs)      RUNS=${2:?}; shift 2 ;;
        --contexts)  CONTEXTS=${2:?}; shift 2 ;;
        --files)     FILES=${2:?}; shift 2 ;;
        --kvfs)      KVFS=${2:?}; shift 2 ;;
        --dir)       WORKDIR=${2:?}; shift 2 ;;
        --sections)  SECTIONS=${2:?}; shift 2 ;;
        --evict-ram) EVICT_RAM=${2:?}; shift 2 ;;
        --rss-limit) RSS_LIMIT_MIB=${2:?}; shift 2 ;;
        --timeout)   OP_TIMEOUT=${2:?}; shift 2 ;;
        -h|--help)   usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

posint "$SIZE_MIB" || die "--size must be a positive integer (MiB)"
posint "$RUNS" || die "--runs must be a positive integer"
posint "$CONTEXTS" || die "--contexts must be a positive integer"
posint "$FILES" || die "--files must be a positive integer"
posint "$OP_TIMEOUT" || die "--timeout must be a positive integer"
[ -z "$RSS_LIMIT_MIB" ] || posint "$RSS_LIMIT_MIB" || die "--rss-limit must be a positive integer (MiB)"
[[ "$EVICT_RAM" == default || "$EVICT_RAM" =~ ^[0-9]+[KkMmGgTt]?$ ]] ||
    die "--evict-ram must be a size such as 16M, or 'default'"
[[ "$SECTIONS" =~ ^[123](,[123])*$ ]] || die "--sections must be a list such as 1,3"
[ "$CONTEXTS" -le 9999999 ] || die "--contexts must be at most 9999999"
bench_check_env gcc fusermount3 mountpoint dd cmp timeout awk sqlite3 sha256sum du find
want() { [[ ",$SECTIONS," == *",$1,"* ]]; }

bench_need_kvfs
KVFSCTL="$(dirname "$KVFS")/kvfsctl"
bench_check_workdir

bench_rss_limit

MNT="$WORKDIR/mnt"
BUILD="$WORKDIR/build"
LOGDIR="$WORKDIR/logs"
SRC="$WORKDIR/kv-${SIZE_MIB}M.bin"
SIZE_BYTES=$((SIZE_MIB * 1048576))
REPORT="$WORKDIR/bench_policy.md"
GUARD_FLAG="$WORKDIR/guard.killed"

# ---------------------------------------------------------------- mounts ----
DPID=""                 # pid of the currently running daemon (our child)

stop_guard() { rss_guard_stop; }

# The guard (lib.sh) SIGKILLs our daemon when its RSS passes RSS_LIMIT_MIB.
start_guard() { rss_guard_start "$1" "$GUARD_FLAG"; }

guard_note() {          # text for a report note when the guard fired, else nothing
    [ -s "$GUARD_FLAG" ] || return 0
    echo "daemon SIGKILLed by the bench's RSS guard at VmRSS $(( $(cat "$GUARD_FLAG") / 1024 )) MiB (limit $RSS_LIMIT_MIB MiB)"
}

DAEMON_WAIT_S=60        # stop_daemon: seconds for the daemon to flush and exit
on_daemon_stopped() { stop_guard; }
bench_traps

# start_daemon STORE LOGFILE [-o OPTS] -> sets DPID, returns 0 when mounted
start_daemon() {
    local store=$1 logf=$2 i
    shift 2
    mkdir -p "$MNT"
    "$KVFS" -f "$@" "$store" "$MNT" >>"$logf" 2>&1 &
    DPID=$!
    start_guard "$DPID"
    for ((i = 0; i < 6000; i++)); do       # up to 60 s
        if mountpoint -q "$MNT" 2>/dev/null; then return 0; fi
        if ! kill -0 "$DPID" 2>/dev/null; then
            wait "$DPID" 2>/dev/null; DAEMON_RC=$?; DPID=""
            stop_guard
            log "ERROR: kvfs $* exited (rc=$DAEMON_RC) before mounting; log: $logf"
            force_unmount
            return 1
        fi
        sleep 0.01
    done
    log "ERROR: kvfs $* did not mount within 60 s; log: $logf"
    stop_daemon
    return 1
}

secs() { awk -v n="$1" 'BEGIN { printf "%.3f", n / 1e9 }'; }                    # ns -> s
rate() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.0f", c * 1e9 / n }'; }      # count ns -> /s

stats() { cat "$MNT/.kvfs/stats" 2>/dev/null; }
metric() {              # metric TEXT NAME -> value (-1 when absent)
    awk -v n="$2" '$1 == n { print $2; f = 1; exit } END { if (!f) print -1 }' <<< "$1"
}
M_MANUAL='kvfs_evictions_total{reason="manual"}'

status_kb() {           # status_kb FIELD -> kB of our daemon ("" if gone)
    [ -n "$DPID" ] || return 0
    awk -v f="$1:" '$1 == f { print $2 }' "/proc/$DPID/status" 2>/dev/null
}
mib() { awk -v k="$1" 'BEGIN { if (k == "") print "-1"; else printf "%.0f", k / 1024 }'; }

# ---------------------------------------------------------------- stats ----
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print ""; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { tr ' ' '\n' | awk 'NF' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) print lo "–" hi }'; }
cell() {                # cell "v1 v2 ..." [printf-format] -> "median (min–max)" or "–"
    local m fmt=${2:-}
    m=$(echo "$1" | median)
    if [ -z "$m" ]; then echo "–"; return; fi
    if [ -z "$fmt" ]; then  # as many decimals as the most precise value
        fmt="%.$(echo "$1" | tr ' ' '\n' | awk -F. 'NF > 1 && length($2) > d { d = length($2) } END { print d + 0 }')f"
    fi
    # shellcheck disable=SC2059
    m=$(printf "$fmt" "$m")
    if [ "$(echo "$1" | wc -w)" -gt 1 ]; then echo "$m ($(echo "$1" | minmax))"; else echo "$m"; fi
}

declare -A R=()         # R[key] = space-separated per-run values
declare -A NOTES=()     # NOTES[section] = notes
declare -A OK=()        # OK[key] = successful runs
add() { R[$1]+="$2 "; }
note() { local s=$1; shift; NOTES[$s]="${NOTES[$s]:+${NOTES[$s]}; }$*"; log "NOTE $s: $*"; }
okrun() { OK[$1]=$((${OK[$1]:-0} + 1)); }

# ------------------------------------------------------------ preparation ----
mkdir -p "$BUILD" "$LOGDIR"
bench_clear_stale_mount
rm -rf "$WORKDIR"/store-* "$GUARD_FLAG"

# Real KV tensors: the stories260k set when this machine has it, else the
# repository's own test tensors.
KV_FILES=()
for f in /work/shared/data/kv/stories260k/*/*.f16; do [ -f "$f" ] && KV_FILES+=("$f"); done
if [ ${#KV_FILES[@]} -eq 0 ]; then
    for f in "$REPO_ROOT"/tests/data/kv/*/*.f16; do [ -f "$f" ] && KV_FILES+=("$f"); done
fi
[ ${#KV_FILES[@]} -gt 0 ] || die "no *.f16 KV tensors found (tests/data/kv or /work/shared/data/kv)"
KV_DESC="${#KV_FILES[@]} fp16 tensors from $(dirname "$(dirname "${KV_FILES[0]}")"), $(cat "${KV_FILES[@]}" | wc -c) bytes, concatenated repeatedly"

if [ ! -f "$SRC" ] || [ "$(stat -c %s "$SRC")" != "$SIZE_BYTES" ] ||
   [ "$(cat "$SRC.desc" 2>/dev/null)" != "$KV_DESC" ]; then
    log "building $SIZE_MIB MiB of KV data in $SRC"
    rm -f "$WORKDIR"/kv-*M.bin "$WORKDIR"/kv-*M.bin.desc
    per=$(cat "${KV_FILES[@]}" | wc -c)
    reps=$(( (SIZE_BYTES + per - 1) / per ))
    for ((i = 0; i < reps; i++)); do cat "${KV_FILES[@]}"; done | head -c "$SIZE_BYTES" > "$SRC.tmp"
    if [ "$(stat -c %s "$SRC.tmp" 2>/dev/null)" != "$SIZE_BYTES" ] || ! mv "$SRC.tmp" "$SRC"; then
        die "cannot create $SRC"
    fi
    echo "$KV_DESC" > "$SRC.desc"
fi

# mkctx: the create workload of section 2, one process, no shell per file.
cat > "$BUILD/mkctx.c" <<'EOF'
/* mkctx DIR N FILESIZE SRC: for i in 0..N-1: mkdir DIR/ctx<i>, create
 * DIR/ctx<i>/f, write FILESIZE bytes of SRC (at i*FILESIZE modulo its
 * size), close.  Prints the elapsed nanoseconds of the loop. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	struct stat st;
	char path[4096], *src;
	long n, fsz, slots;
	int width = 5, sfd;

	if (argc != 5) {
		fprintf(stderr, "usage: mkctx DIR N FILESIZE SRC\n");
		return 2;
	}
	n = atol(argv[2]);
	fsz = atol(argv[3]);
	for (long m = n - 1; m >= 100000; m /= 10)
		width++;
	sfd = open(argv[4], O_RDONLY);
	if (sfd < 0 || fstat(sfd, &st) || fsz < 1 || st.st_size < fsz) {
		fprintf(stderr, "mkctx: %s: unusable source\n", argv[4]);
		return 1;
	}
	slots = (long)(st.st_size / fsz);
	if (slots > 4096)
		slots = 4096;
	src = malloc((size_t)(slots * fsz));
	if (!src || pread(sfd, src, (size_t)(slots * fsz), 0) != slots * fsz) {
		fprintf(stderr, "mkctx: cannot read %s\n", argv[4]);
		return 1;
	}
	close(sfd);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++) {
		int len = snprintf(path, sizeof(path), "%s/ctx%0*ld", argv[1], width, i), fd;

		if (mkdir(path, 0755)) {
			fprintf(stderr, "mkctx: mkdir %s: %s (after %ld contexts)\n", path, strerror(errno), i);
			return 1;
		}
		snprintf(path + len, sizeof(path) - (size_t)len, "/f");
		fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
		if (fd < 0) {
			fprintf(stderr, "mkctx: open %s: %s\n", path, strerror(errno));
			return 1;
		}
		if (write(fd, src + (i % slots) * fsz, (size_t)fsz) != fsz) {
			fprintf(stderr, "mkctx: write %s: %s\n", path, strerror(errno));
			return 1;
		}
		if (close(fd)) {
			fprintf(stderr, "mkctx: close %s: %s\n", path, strerror(errno));
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
	return 0;
}
EOF
gcc -O2 -Wall -Wextra -o "$BUILD/mkctx" "$BUILD/mkctx.c" > "$LOGDIR/build-mkctx.log" 2>&1 ||
    { cat "$LOGDIR/build-mkctx.log" >&2; die "building mkctx failed"; }

KVFS_MSG=$(kvfs_msg)
GIT_MSG=$(git -C "$REPO_ROOT" log -1 --format='%h %s' 2>/dev/null | cut -c1-100)
[ -z "$(git -C "$REPO_ROOT" status --porcelain -- src 2>/dev/null)" ] || GIT_MSG="$GIT_MSG (src/ modified)"
describe_machine $((MEM_KB / 1048576)) "$(pkg-config --modversion fuse3 2>/dev/null || echo '?')" \
    "sqlite3 CLI $(sqlite3 --version | cut -d' ' -f1)"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(now_ns)
log "kvfs: $KVFS ($KVFS_MSG; $GIT_MSG)"
log "machine: $MACHINE; load $LOAD0"
log "backing fs: $DF_LINE; RSS guard $RSS_LIMIT_MIB MiB"

# =============================================== 1. DRAM tier vs cold ====
CODECS=(lz4 zstd)
NCHUNK=$(( (SIZE_BYTES + 1048575) / 1048576 ))   # chunks of 1 MiB (the default)
MISS_MAX=$(( NCHUNK / 100 > 1 ? NCHUNK / 100 : 1 ))
declare -A WROTE=() CMP=()

tier_write() {          # tier_write CODEC: fresh store, timed write of SRC
    local c=$1 t0 t1 rc
    local store="$WORKDIR/store-tier-$c" logf="$LOGDIR/tier-$c-write.log"
    : > "$logf"
    rm -rf "$store"
    log "tier $c: writing $SIZE_MIB MiB"
    start_daemon "$store" "$logf" -o "codec=$c" || { note "tier_$c" "write mount failed"; log_tail "$logf"; return 1; }
    cat "$SRC" > /dev/null
    sync; sleep 1
    t0=$(now_ns)
    timeout "$OP_TIMEOUT" dd if="$SRC" of="$MNT/f" bs=1M iflag=fullblock conv=fsync status=none 2>>"$logf"
    rc=$?
    t1=$(now_ns)
    stop_daemon
    if [ "$rc" -ne 0 ]; then
        note "tier_$c" "write dd failed rc=$rc, daemon rc=$DAEMON_RC $(guard_note)"; log_tail "$logf"; return 1
    fi
    [ "$DAEMON_RC" -eq 0 ] || note "tier_$c" "daemon exit rc=$DAEMON_RC after write+unmount"
    add "tier_${c}_write" "$(mbps "$SIZE_BYTES" $((t1 - t0)))"
    R[tier_${c}_store]=$(du -sb "$store" | awk '{ printf "%.1f", $1 / 1048576 }')
    WROTE[$c]=1
}

timed_read() {          # timed_read -> "bytes ns", dd of the whole file
    local t0 t1 bytes rc
    t0=$(now_ns)
    bytes=$(timeout "$OP_TIMEOUT" dd if="$MNT/f" of=/dev/null bs=1M 2>&1 >/dev/null | awk '/bytes/ { print $1 }')
    rc=$?
    t1=$(now_ns)
    echo "${bytes:-0} $((t1 - t0)) $rc"
}

tier_run() {            # tier_run CODEC RUN
    local c=$1 r=$2
    local store="$WORKDIR/store-tier-$c" logf="$LOGDIR/tier-$c-run$r.log"
    local s0 s1 s2 b ns rc cold hot h0 m0 h1 m1 dh dm tb out
    : > "$logf"
    log "run $r: tier $c: remount, cold read, hot read"
    start_daemon "$store" "$logf" -o "codec=$c,ram=$TIER_RAM" || {
        note "tier_$c" "run $r: mount failed"; log_tail "$logf"; return 1; }
    drop_caches
    s0=$(stats)
    tb=$(metric "$s0" kvfs_tier_bytes)
    [ "${tb:-x}" = 0 ] || note "tier_$c" "run $r: tier not empty before the cold read (kvfs_tier_bytes=${tb:-?})"
    read -r b ns rc <<< "$(timed_read)"
    if [ "$rc" -ne 0 ] || [ "$b" != "$SIZE_BYTES" ]; then
        note "tier_$c" "run $r: cold read failed (rc=$rc, $b of $SIZE_BYTES bytes) $(guard_note)"
        stop_daemon; log_tail "$logf"; return 1
    fi
    cold=$(mbps "$b" "$ns")
    s1=$(stats)
    add "tier_${c}_coldmiss" "$(( $(metric "$s1" kvfs_tier_misses_total) - $(metric "$s0" kvfs_tier_misses_total) ))"
    add "tier_${c}_tierbytes" "$(mib "$(( $(metric "$s1" kvfs_tier_bytes) / 1024 ))")"
    drop_caches                 # kernel cache gone, the daemon's tier stays
    read -r b ns rc <<< "$(timed_read)"
    if [ "$rc" -ne 0 ] || [ "$b" != "$SIZE_BYTES" ]; then
        note "tier_$c" "run $r: hot read failed (rc=$rc, $b of $SIZE_BYTES bytes) $(guard_note)"
        stop_daemon; log_tail "$logf"; return 1
    fi
    hot=$(mbps "$b" "$ns")
    s2=$(stats)
    h0=$(metric "$s1" kvfs_tier_hits_total); m0=$(metric "$s1" kvfs_tier_misses_total)
    h1=$(metric "$s2" kvfs_tier_hits_total); m1=$(metric "$s2" kvfs_tier_misses_total)
    dh=$((h1 - h0)); dm=$((m1 - m0))
    add "tier_${c}_hothits" "$dh"; add "tier_${c}_hotmiss" "$dm"
    # Reference: the same file again from the kernel page cache (keep_cache).
    read -r b ns rc <<< "$(timed_read)"
    if [ "$rc" -eq 0 ] && [ "$b" = "$SIZE_BYTES" ]; then
        add "tier_${c}_pc" "$(mbps "$b" "$ns")"
        add "tier_${c}_pc_tierhits" "$(( $(metric "$(stats)" kvfs_tier_hits_total) - h1 ))"
    fi
    if [ -z "${CMP[$c]:-}" ]; then          # correctness, once per codec, untimed
        if out=$(timeout "$OP_TIMEOUT" cmp "$MNT/f" "$SRC" 2>&1); then CMP[$c]=ok
        else CMP[$c]=MISMATCH; note "tier_$c" "run $r: cmp: ${out:-timeout}"; fi
    fi
    stop_daemon
    [ "$DAEMON_RC" -eq 0 ] || note "tier_$c" "run $r: daemon exit rc=$DAEMON_RC after unmount"
    add "tier_${c}_cold" "$cold"; add "tier_${c}_hot" "$hot"
    add "tier_${c}_ratio" "$(awk -v h="$hot" -v c="$cold" 'BEGIN { printf "%.2f", h / c }')"
    if [ "$dh" -lt "$NCHUNK" ] || [ "$dm" -gt "$MISS_MAX" ]; then
        note "tier_$c" "run $r: hot read was not served by the tier: $dh hits, $dm misses (expected >= $NCHUNK hits, <= $MISS_MAX misses)"
        R[tier_${c}_bad]=1
    fi
    okrun "tier_$c"
}

if want 1; then
    for c in "${CODECS[@]}"; do tier_write "$c"; done
    for ((r = 1; r <= RUNS; r++)); do
        for ((i = 0; i < ${#CODECS[@]}; i++)); do
            c=${CODECS[$(((i + r - 1) % ${#CODECS[@]}))]}
            [ -n "${WROTE[$c]:-}" ] && tier_run "$c" "$r"
        done
    done
    rm -rf "$WORKDIR"/store-tier-*
fi

# ============================================== 2. eviction rate =======
EVICT_OPTS=()
[ "$EVICT_RAM" = default ] || EVICT_OPTS=(-o "ram=$EVICT_RAM")

evict_run() {           # evict_run RUN
    local r=$1 out rc t0 t1
    local store="$WORKDIR/store-evict" logf="$LOGDIR/evict-run$r.log"
    local s0 s1 nctx nfiles hwm cafter man stored
    : > "$logf"
    rm -rf "$store"
    log "run $r: eviction: creating $CONTEXTS contexts"
    start_daemon "$store" "$logf" "${EVICT_OPTS[@]}" || { note evict "run $r: mount failed"; log_tail "$logf"; return 1; }
    mkdir "$MNT/ns" || { note evict "run $r: mkdir ns failed"; stop_daemon; return 1; }
    out=$(timeout "$OP_TIMEOUT" "$BUILD/mkctx" "$MNT/ns" "$CONTEXTS" "$CTX_FILE" "$SRC" 2>>"$logf")
    rc=$?
    if [ "$rc" -ne 0 ] || ! posint "${out:-x}"; then
        note evict "run $r: creating contexts failed (rc=$rc$([ "$rc" -eq 124 ] && echo ", timeout ${OP_TIMEOUT}s"): $(grep mkctx "$logf" | tail -n 1)) $(guard_note)"
        stop_daemon; log_tail "$logf"; return 1
    fi
    add evict_create "$(rate "$CONTEXTS" "$out")"
    add evict_create_s "$(secs "$out")"
    hwm=$(status_kb VmHWM)
    add evict_hwm "$(mib "$hwm")"
    s0=$(stats)
    nctx=$(metric "$s0" kvfs_contexts); nfiles=$(metric "$s0" kvfs_files)
    add evict_tierbytes "$(mib "$(( $(metric "$s0" kvfs_tier_bytes) / 1024 ))")"  # -1: absent
    if [ "$nctx" != "$CONTEXTS" ] || [ "$nfiles" != "$CONTEXTS" ]; then
        note evict "run $r: after the creates kvfs_contexts=$nctx kvfs_files=$nfiles, expected $CONTEXTS"
    fi
    log "run $r: eviction: echo 0 > .kvfs/evict"
    t0=$(now_ns)
    # shellcheck disable=SC2016  # $1 is the inner shell's
    timeout "$OP_TIMEOUT" sh -c 'echo 0 > "$1"' sh "$MNT/.kvfs/evict" 2>>"$logf"
    rc=$?
    t1=$(now_ns)
    if [ "$rc" -ne 0 ]; then
        note evict "run $r: the write to .kvfs/evict failed (rc=$rc$([ "$rc" -eq 124 ] && echo ", timeout ${OP_TIMEOUT}s")) $(guard_note)"
        stop_daemon; log_tail "$logf"; return 1
    fi
    s1=$(stats)
    cafter=$(metric "$s1" kvfs_contexts); man=$(metric "$s1" "$M_MANUAL"); stored=$(metric "$s1" kvfs_stored_bytes)
    add evict_s "$(secs $((t1 - t0)))"
    add evict_rate "$(rate "$man" $((t1 - t0)))"
    add evict_after "$cafter"; add evict_manual "$man"; add evict_stored "$stored"
    add evict_rss "$(mib "$(status_kb VmRSS)")"
    if [ "${man:-x}" != "$CONTEXTS" ] || [ "${cafter:-1}" -gt $((CONTEXTS / 100)) ]; then
        note evict "run $r: after the eviction kvfs_contexts=$cafter (expected ~0), evictions_total{reason=\"manual\"}=$man (expected $CONTEXTS), kvfs_stored_bytes=$stored"
        R[evict_bad]=1
    fi
    stop_daemon
    [ "$DAEMON_RC" -eq 0 ] || note evict "run $r: daemon exit rc=$DAEMON_RC after unmount"
    rm -rf "$store"
    okrun evict
}

if want 2; then
    for ((r = 1; r <= RUNS; r++)); do evict_run "$r"; done
    rm -rf "$WORKDIR"/store-evict
fi

# ======================================= 3. remount of a 1M-file index ====
BSTORE="$WORKDIR/store-remount"
REAL="$BUILD/real-${REAL_MIB}M.bin"
NDIRS=$(( (FILES + FPD - 1) / FPD ))
FIRST=$(( FILES < FPD ? FILES : FPD ))       # files in bulk/d0000

build_index() {
    local logf="$LOGDIR/remount-build.log" uv t0 t1 info
    : > "$logf"
    rm -rf "$BSTORE"
    head -c $((REAL_MIB * 1048576)) "$SRC" > "$REAL"
    log "remount: creating the real context through the mount"
    start_daemon "$BSTORE" "$logf" || { note remount "mount for the real context failed"; log_tail "$logf"; return 1; }
    if ! mkdir -p "$MNT/real/ctx0" || ! cp "$REAL" "$MNT/real/ctx0/layer0.k" || ! sync "$MNT/real/ctx0/layer0.k"; then
        note remount "writing the real context failed"; stop_daemon; log_tail "$logf"; return 1
    fi
    stop_daemon
    [ "$DAEMON_RC" -eq 0 ] || note remount "daemon exit rc=$DAEMON_RC after writing the real context"
    uv=$(sqlite3 "$BSTORE/kvfs.db" 'PRAGMA user_version' 2>>"$logf")
    # Schemas 3 and 4 only add indexes, which SQLite keeps up to date itself.
    if ! [[ "$uv" =~ ^[234]$ ]]; then
        note remount "index schema version is '$uv'; the bulk insert is written for versions 2 to 4 (schema/001-004): update bench_policy.sh"
        return 1
    fi
    log "remount: bulk-inserting $FILES files ($NDIRS context dirs of up to $FPD) with sqlite3"
    t0=$(now_ns)
    # One transaction: a namespace dir bulk/ (ino base+1), NDIRS context dirs
    # bulk/dNNNN (ino base+2+d, each with a context row) and FILES empty
    # regular files bulk/dNNNN/fNNNN (ino base+2+NDIRS+i).  Names are BLOBs,
    # as kvfs stores them; times are ns.
    sqlite3 -bail "$BSTORE/kvfs.db" >>"$logf" 2>&1 <<EOF
PRAGMA journal_mode=WAL;
PRAGMA cache_size=-262144;
BEGIN IMMEDIATE;
CREATE TEMP TABLE p AS SELECT (SELECT max(ino) FROM inode) AS base,
  CAST(strftime('%s','now') AS INTEGER) * 1000000000 AS t,
  $NDIRS AS nd, $FILES AS nf, $FPD AS fpd, $(id -u) AS uid, $(id -g) AS gid;
INSERT INTO inode(ino,mode,uid,gid,nlink,size,stored,atime,mtime,ctime)
  SELECT base + 1, 16877, uid, gid, 2 + nd, 0, 0, t, t, t FROM p;
INSERT INTO dentry(parent,name,ino) SELECT 1, CAST('bulk' AS BLOB), base + 1 FROM p;
UPDATE inode SET nlink = nlink + 1, mtime = (SELECT t FROM p), ctime = (SELECT t FROM p) WHERE ino = 1;
WITH RECURSIVE s(d) AS (SELECT 0 UNION ALL SELECT d + 1 FROM s, p WHERE d + 1 < p.nd)
INSERT INTO inode(ino,mode,uid,gid,nlink,size,stored,atime,mtime,ctime)
  SELECT base + 2 + d, 16877, uid, gid, 2, 0, 0, t, t, t FROM s, p;
WITH RECURSIVE s(d) AS (SELECT 0 UNION ALL SELECT d + 1 FROM s, p WHERE d + 1 < p.nd)
INSERT INTO dentry(parent,name,ino)
  SELECT base + 1, CAST(printf('d%04d', d) AS BLOB), base + 2 + d FROM s, p;
WITH RECURSIVE s(d) AS (SELECT 0 UNION ALL SELECT d + 1 FROM s, p WHERE d + 1 < p.nd)
INSERT INTO context(ino,last_access,hits,pin,ttl) SELECT base + 2 + d, t, 0, 0, NULL FROM s, p;
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s, p WHERE i + 1 < p.nf)
INSERT INTO inode(ino,mode,uid,gid,nlink,size,stored,atime,mtime,ctime)
  SELECT base + 2 + nd + i, 33188, uid, gid, 1, 0, 0, t, t, t FROM s, p;
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s, p WHERE i + 1 < p.nf)
INSERT INTO dentry(parent,name,ino)
  SELECT base + 2 + i / fpd, CAST(printf('f%04d', i % fpd) AS BLOB), base + 2 + nd + i FROM s, p;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
EOF
    local rc=$?
    t1=$(now_ns)
    if [ "$rc" -ne 0 ]; then note remount "bulk insert failed (sqlite3 rc=$rc)"; log_tail "$logf"; return 1; fi
    R[remount_insert_s]=$(secs $((t1 - t0)))
    R[remount_db_mib]=$(du -sb "$BSTORE"/kvfs.db* | awk '{ s += $1 } END { printf "%.1f", s / 1048576 }')
    if [ -x "$KVFSCTL" ]; then
        info=$("$KVFSCTL" info "$BSTORE" 2>&1)
        R[remount_info_before]=$(awk '/^(files|directories|contexts):/ { printf "%s%s %s", sep, $1, $2; sep = ", " }' <<< "$info")
    fi
}

remount_run() {         # remount_run RUN
    local r=$1 t0 t1 t2 t3 t4 i n1 nd nall out
    local logf="$LOGDIR/remount-run$r.log"
    : > "$logf"
    log "run $r: remount: drop_caches, start kvfs, first read"
    drop_caches
    mkdir -p "$MNT"
    t0=$(now_ns)
    "$KVFS" -f "$BSTORE" "$MNT" >>"$logf" 2>&1 &
    DPID=$!
    start_guard "$DPID"
    for ((i = 0; i < 60000; i++)); do       # up to ~10 min
        mountpoint -q "$MNT" 2>/dev/null && break
        if ! kill -0 "$DPID" 2>/dev/null; then
            wait "$DPID" 2>/dev/null; DAEMON_RC=$?; DPID=""; stop_guard; force_unmount
            note remount "run $r: kvfs exited (rc=$DAEMON_RC) before mounting $(guard_note)"; log_tail "$logf"; return 1
        fi
        sleep 0.01
    done
    t1=$(now_ns)
    if ! out=$(timeout "$OP_TIMEOUT" cmp "$MNT/real/ctx0/layer0.k" "$REAL" 2>&1); then
        note remount "run $r: first read failed: ${out:-timeout} $(guard_note)"; stop_daemon; log_tail "$logf"; return 1
    fi
    t2=$(now_ns)
    add remount_mount "$(secs $((t1 - t0)))"
    add remount_first "$(secs $((t2 - t0)))"
    add remount_rss1 "$(mib "$(status_kb VmRSS)")"; add remount_hwm1 "$(mib "$(status_kb VmHWM)")"
    # shellcheck disable=SC2012  # plain names made by this script
    n1=$(ls "$MNT/bulk/d0000" 2>>"$logf" | wc -l)
    # shellcheck disable=SC2012
    nd=$(ls "$MNT/bulk" 2>>"$logf" | wc -l)
    log "run $r: remount: ls -R of namespace bulk/"
    t3=$(now_ns)
    nall=$(timeout "$OP_TIMEOUT" ls -R "$MNT/bulk" 2>>"$logf" | awk 'NF && !/:$/' | wc -l)
    t4=$(now_ns)
    add remount_lsR "$(secs $((t4 - t3)))"
    add remount_lsR_rate "$(rate "$nall" $((t4 - t3)))"
    add remount_rss2 "$(mib "$(status_kb VmRSS)")"; add remount_hwm2 "$(mib "$(status_kb VmHWM)")"
    R[remount_seen]="ls bulk/d0000: $n1, ls bulk: $nd, ls -R bulk: $nall entries"
    if [ "$n1" != "$FIRST" ] || [ "$nd" != "$NDIRS" ] || [ "$nall" != $((FILES + NDIRS)) ]; then
        note remount "run $r: entries seen: ${R[remount_seen]}; expected $FIRST, $NDIRS, $((FILES + NDIRS)) $(guard_note)"
        R[remount_bad]=1
    fi
    stop_daemon
    [ "$DAEMON_RC" -eq 0 ] || note remount "run $r: daemon exit rc=$DAEMON_RC after unmount"
    okrun remount
}

if want 3; then
    if build_index; then
        for ((r = 1; r <= RUNS; r++)); do remount_run "$r"; done
        if [ -x "$KVFSCTL" ]; then
            info=$("$KVFSCTL" info "$BSTORE" 2>&1)
            R[remount_files_after]=$(awk '/^files:/ { print $2 }' <<< "$info")
            R[remount_info_after]=$(awk '/^(files|directories|contexts):/ { printf "%s%s %s", sep, $1, $2; sep = ", " }' <<< "$info")
            [ "${R[remount_files_after]:-0}" -ge "$FILES" ] 2>/dev/null ||
                { note remount "kvfsctl info after unmount: ${R[remount_info_after]:-$info}; expected files >= $FILES"; R[remount_bad]=1; }
        else
            note remount "kvfsctl not found at $KVFSCTL: file count after unmount not checked"
        fi
    fi
    rm -rf "$BSTORE"
fi

# --------------------------------------------------------------- report ----
T_END=$(now_ns)
res() {                 # res OKKEY BADKEY [extra-condition-result] -> PASS/FAIL text
    local ok=${OK[$1]:-0}
    if [ "$ok" -eq 0 ]; then echo "FAIL (no successful run)"
    elif [ -n "${R[$2]:-}" ]; then echo "FAIL"
    elif [ "$ok" -lt "$RUNS" ]; then echo "FAIL ($ok/$RUNS runs)"
    else echo "${3:-PASS}"; fi
}
pv() { local v=${R[$1]:-}; echo "${v% }"; }    # per-run values

{
    echo "# kvfs cache-policy benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $RUNS runs per measure, median (min–max); total wall time $(( (T_END - T_START) / 1000000000 )) s."
    echo
    echo "Machine: $MACHINE; load average at start $LOAD0"
    echo
    echo "Backing fs (df -T $WORKDIR): $DF_LINE"
    echo
    echo "kvfs: $KVFS — $KVFS_MSG; commit $GIT_MSG"
    echo
    echo "Data: $KV_DESC. MB/s = 10^6 B/s. RSS guard: the daemon is SIGKILLed above $RSS_LIMIT_MIB MiB VmRSS."
    echo
    echo "## Summary"
    echo
    echo "| # | measure | median (min–max) | target / check | result |"
    echo "|---|---|---|---|---|"
    if want 1; then
        for c in "${CODECS[@]}"; do
            r=$(res "tier_$c" "tier_${c}_bad")
            [ "${CMP[$c]:-}" = MISMATCH ] && r="FAIL (wrong data)"
            echo "| 1 | $c: hot (DRAM tier) / cold read, ${SIZE_MIB} MiB, ram=$TIER_RAM | $(cell "$(pv "tier_${c}_ratio")" %.2f)x ($(cell "$(pv "tier_${c}_hot")") vs $(cell "$(pv "tier_${c}_cold")") MB/s) | hot read: >= $NCHUNK tier hits, <= $MISS_MAX misses | $r |"
        done
    fi
    if want 2; then
        r=$(res evict evict_bad)
        echo "| 2 | create $CONTEXTS contexts (mkdir+create+write 4 KiB+close) | $(cell "$(pv evict_create)") contexts/s | – | $([ "${OK[evict]:-0}" -gt 0 ] && echo info || echo FAIL) |"
        echo "| 2 | \`echo 0 > .kvfs/evict\` of $CONTEXTS contexts | $(cell "$(pv evict_rate)") contexts/s ($(cell "$(pv evict_s)") s) | kvfs_contexts ~0 and evictions_total{manual} = $CONTEXTS | $r |"
    fi
    if want 3; then
        first=$(pv remount_first | median)
        extra=PASS
        [ -n "$first" ] && awk -v f="$first" -v t="$REMOUNT_TARGET" 'BEGIN { exit !(f >= t) }' && extra="FAIL (>= ${REMOUNT_TARGET} s)"
        r=$(res remount remount_bad "$extra")
        echo "| 3 | remount, $FILES-file index: kvfs start -> first read done | $(cell "$(pv remount_first)") s | < ${REMOUNT_TARGET} s, all files visible | $r |"
    fi
    if want 1; then
        echo
        echo "## 1. DRAM tier vs cold read"
        echo
        echo "A ${SIZE_MIB} MiB file of KV data is written once per codec (\`dd bs=1M conv=fsync\`, one run). Each run: remount with \`-o codec=C,ram=$TIER_RAM\`, \`drop_caches\`, **cold** \`dd bs=1M\` (empty tier, store files not in the page cache); \`drop_caches\` again, **hot** \`dd bs=1M\` (tier full, kernel cache empty); then once more without dropping anything (kernel page cache, for reference). Codecs alternate, rotating each run. Tier hits/misses are the deltas of \`kvfs_tier_hits_total\`/\`kvfs_tier_misses_total\` over the read."
        echo
        echo "| codec | write MB/s | store MiB | cold read MB/s | hot read MB/s | hot/cold | hot read tier hits / misses | cold read tier misses | tier MiB after cold | page-cache re-read MB/s | runs ok | cmp | notes |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        for c in "${CODECS[@]}"; do
            echo "| $c | $(cell "$(pv "tier_${c}_write")") | ${R[tier_${c}_store]:-?} | $(cell "$(pv "tier_${c}_cold")") | $(cell "$(pv "tier_${c}_hot")") | $(cell "$(pv "tier_${c}_ratio")" %.2f) | $(cell "$(pv "tier_${c}_hothits")") / $(cell "$(pv "tier_${c}_hotmiss")") | $(cell "$(pv "tier_${c}_coldmiss")") | $(cell "$(pv "tier_${c}_tierbytes")") | $(cell "$(pv "tier_${c}_pc")") | ${OK[tier_$c]:-0}/$RUNS | ${CMP[$c]:-not checked} | ${NOTES[tier_$c]:-} |"
        done
    fi
    if want 2; then
        echo
        echo "## 2. Eviction rate"
        echo
        echo "Each run: fresh store, \`kvfs -f ${EVICT_OPTS[*]:-(default options)}\`; one C process makes $CONTEXTS contexts \`ns/ctxNNNNN/f\` (mkdir, open O_CREAT, write $CTX_FILE bytes of KV data, close; timed inside the process); then \`echo 0 > MNT/.kvfs/evict\` (timed; the write returns when the eviction is done) and \`.kvfs/stats\` is read."
        echo
        echo "| contexts | create contexts/s | create s | evict s | evict contexts/s | kvfs_contexts after | evictions{manual} | stored bytes after | tier MiB after creates | daemon VmHWM after creates MiB | VmRSS after evict MiB | runs ok | notes |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        echo "| $CONTEXTS | $(cell "$(pv evict_create)") | $(cell "$(pv evict_create_s)") | $(cell "$(pv evict_s)") | $(cell "$(pv evict_rate)") | $(cell "$(pv evict_after)") | $(cell "$(pv evict_manual)") | $(cell "$(pv evict_stored)") | $(cell "$(pv evict_tierbytes)") | $(cell "$(pv evict_hwm)") | $(cell "$(pv evict_rss)") | ${OK[evict]:-0}/$RUNS | ${NOTES[evict]:-} |"
    fi
    if want 3; then
        echo
        echo "## 3. Remount of a ${FILES}-file index"
        echo
        echo "One real context \`real/ctx0/layer0.k\` ($REAL_MIB MiB of KV data) is written through a mount; after unmounting, one sqlite3 transaction adds a namespace \`bulk/\` of $NDIRS context directories \`dNNNN\` (with context rows) holding $FILES empty files \`fNNNN\` ($FPD per directory) (${R[remount_insert_s]:-?} s; index now ${R[remount_db_mib]:-?} MiB; kvfsctl info: ${R[remount_info_before]:-?}). Each run: \`sync; drop_caches\`, start \`kvfs -f STORE MNT\` (default options), poll \`mountpoint -q\` every 10 ms, \`cmp\` the real file: seconds from the start of kvfs. RSS from /proc/PID/status right after that read, and after \`ls -R MNT/bulk\` (every file)."
        echo
        echo "| files | mounted s | first read done s | VmRSS / VmHWM after first read MiB | ls -R bulk s | ls -R entries/s | VmRSS / VmHWM after ls -R MiB | entries seen | kvfsctl info after | runs ok | notes |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|"
        echo "| $FILES | $(cell "$(pv remount_mount)") | $(cell "$(pv remount_first)") | $(cell "$(pv remount_rss1)") / $(cell "$(pv remount_hwm1)") | $(cell "$(pv remount_lsR)") | $(cell "$(pv remount_lsR_rate)") | $(cell "$(pv remount_rss2)") / $(cell "$(pv remount_hwm2)") | ${R[remount_seen]:-?} | ${R[remount_info_after]:-?} | ${OK[remount]:-0}/$RUNS | ${NOTES[remount]:-} |"
    fi
    echo
    echo "## Per-run values (in run order)"
    echo
    for k in $(printf '%s\n' "${!R[@]}" | sort); do
        case "$k" in *_bad) continue ;; esac
        echo "* $k: [$(pv "$k")]"
    done
} > "$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
cat "$REPORT"
log "report written to $REPORT; daemon logs in $LOGDIR"
