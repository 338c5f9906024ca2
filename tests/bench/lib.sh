# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# shellcheck disable=SC2034  # REPO_ROOT, DAEMON_RC, MACHINE, DF_LINE, RSS_LIMIT_KB are read by the benchmarks
# Helpers shared by the benchmarks (bench_core.sh, bench_policy.sh, bench_fio.sh)
# and run_all.sh.  Source it at the top of a benchmark (after
# `set -u -o pipefail`):
#   SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
#   . "$SCRIPT_DIR/lib.sh"
#
# The benchmark sets (before calling the functions that use them):
#   MNT        the mount point of the daemon under test
#   WORKDIR    the work directory (bench_check_workdir makes it absolute)
#   KVFS       the kvfs daemon
#   DPID       pid of the running daemon, our child ("" when none)
#   DAEMON_WAIT_S  seconds stop_daemon waits for the daemon to exit
#   USAGE_END  last line of the usage text in the benchmark's header
# and may define on_daemon_stopped, run at the end of stop_daemon and of
# cleanup (default: nothing).

REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
BENCH_NAME=$(basename "${BASH_SOURCE[-1]}" .sh)

# usage [RC]: print lines 3..USAGE_END of the benchmark's header (after the
# shebang and the licence line), exit RC.
usage() {
    sed -n "3,${USAGE_END}p" "${BASH_SOURCE[-1]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# bench_check_env TOOL...: root, a WORKDIR without whitespace, every TOOL.
bench_check_env() {
    local tool
    [ "$(id -u)" -eq 0 ] || die "must run as root (needs /proc/sys/vm/drop_caches)"
    [[ "$WORKDIR" != *[[:space:]]* ]] || die "WORKDIR must not contain whitespace"
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "missing tool: $tool"
    done
}

# posint VALUE: true when VALUE is a positive integer (for option checks).
posint() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }

# bench_abs_kvfs: make KVFS an absolute path.
bench_abs_kvfs() {
    case "$KVFS" in /*) ;; *) KVFS="$PWD/$KVFS" ;; esac
}

# bench_need_kvfs: make KVFS an absolute path to an executable file.
bench_need_kvfs() {
    bench_abs_kvfs
    [ -x "$KVFS" ] && [ -f "$KVFS" ] || die "kvfs binary not found or not executable: $KVFS (build it, or use --kvfs)"
}

# bench_results_dir: create RESULTS and make it absolute.
bench_results_dir() {
    mkdir -p "$RESULTS" || die "cannot create $RESULTS"
    RESULTS=$(cd "$RESULTS" && pwd -P)
}

# bench_rss_limit: RSS_LIMIT_MIB (default: half of MemTotal, read into
# MEM_KB unless set) and RSS_LIMIT_KB, for rss_guard_start.
bench_rss_limit() {
    : "${MEM_KB:=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)}"
    [ -n "$RSS_LIMIT_MIB" ] || RSS_LIMIT_MIB=$((MEM_KB / 2048))
    RSS_LIMIT_KB=$((RSS_LIMIT_MIB * 1024))
}

# bench_check_workdir: create WORKDIR, make it absolute, refuse a file system
# that is not a real disk.
bench_check_workdir() {
    mkdir -p "$WORKDIR" || die "cannot create $WORKDIR"
    WORKDIR=$(cd "$WORKDIR" && pwd -P)
    FSTYPE=$(df --output=fstype "$WORKDIR" | tail -n 1 | tr -d ' ')
    case "$FSTYPE" in
        tmpfs|ramfs|fuse*|overlay) die "$WORKDIR is on $FSTYPE; use --dir on the real disk" ;;
    esac
}

# ---------------------------------------------------------------- mounts ----
is_mounted() {          # listed in the mount table (even if the daemon died)
    awk -v m="$MNT" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts
}

force_unmount() {
    local i dev
    is_mounted || return 0
    for i in 1 2 3 4 5; do
        fusermount3 -u "$MNT" 2>/dev/null && return 0
        is_mounted || return 0
        sleep 0.3
    done
    # Hung daemon or busy mount: abort the FUSE connection, then detach.
    dev=$(mountpoint -d "$MNT" 2>/dev/null) || dev=""
    if [ -n "$dev" ] && [ -w "/sys/fs/fuse/connections/${dev#*:}/abort" ]; then
        echo 1 > "/sys/fs/fuse/connections/${dev#*:}/abort" 2>/dev/null
    fi
    fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
    ! is_mounted
}

on_daemon_stopped() { :; }

# stop_daemon: unmount and wait (up to DAEMON_WAIT_S) for the daemon to exit.
# Sets DAEMON_RC.
DAEMON_RC=0
stop_daemon() {
    local i
    DAEMON_RC=0
    force_unmount || log "WARNING: could not unmount $MNT"
    if [ -n "$DPID" ]; then
        for ((i = 0; i < DAEMON_WAIT_S * 10; i++)); do     # to flush and exit
            kill -0 "$DPID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$DPID" 2>/dev/null; then
            log "WARNING: daemon pid $DPID still alive $DAEMON_WAIT_S s after unmount; killing it"
            kill -TERM "$DPID" 2>/dev/null; sleep 1
            kill -KILL "$DPID" 2>/dev/null
        fi
        wait "$DPID" 2>/dev/null
        DAEMON_RC=$?
        DPID=""
    fi
    on_daemon_stopped
    return 0
}

cleanup() {
    trap - EXIT INT TERM HUP
    if [ -n "$DPID" ] || is_mounted; then
        log "cleanup: unmounting $MNT"
        stop_daemon
    fi
    on_daemon_stopped
}

# bench_traps: unmount and stop our daemon on exit and on signals.
bench_traps() {
    trap cleanup EXIT
    trap 'log "interrupted"; cleanup; exit 130' INT TERM HUP
}

# bench_clear_stale_mount: unmount what an earlier, killed run left on MNT.
bench_clear_stale_mount() {
    if is_mounted; then
        log "stale mount on $MNT from an earlier run; unmounting"
        force_unmount || die "cannot unmount stale $MNT"
    fi
}

# ----------------------------------------------------------------- misc ----
now_ns() { date +%s%N; }
mbps() { awk -v b="$1" -v n="$2" 'BEGIN { printf "%.0f", b * 1000 / n }'; }     # bytes ns -> MB/s
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
log_tail() { tail -n 5 "$1" 2>/dev/null | sed 's/^/    | /' >&2; }

# --------------------------------------------------------- description ----
# kvfs_msg: "binary sha256 ..., built ..." of KVFS.
kvfs_msg() {
    echo "binary sha256 $(sha256sum "$KVFS" | cut -c1-12), built $(date -r "$KVFS" '+%Y-%m-%d %H:%M:%S')"
}

# describe_machine RAM_GIB LIBFUSE [MORE]: sets MACHINE and DF_LINE.
describe_machine() {
    local cpu
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    MACHINE="nproc $(nproc), CPU ${cpu:-unknown}, kernel $(uname -r), RAM $1 GiB, libfuse $2${3:+, $3}"
    DF_LINE=$(df -T "$WORKDIR" | tail -n 1 | awk '{ print $1, $2, "mounted on", $7 }')
}

# kvfs_commit: the repository's commit, and whether src/ or include/ differ
# from it (the daemon under test may then not be that commit).
kvfs_commit() {
    local c
    c=$(git -C "$REPO_ROOT" log -1 --format='%h (%cs)' 2>/dev/null) || c="unknown (not a git checkout)"
    if [ -n "$(git -C "$REPO_ROOT" status --porcelain -- src include 2>/dev/null)" ]; then
        c="$c, with uncommitted changes in src/ or include/"
    fi
    echo "$c"
}

# machine_md: the machine as a markdown bullet list (CPU, cores, RAM, OS,
# kernel, the disk and file system under WORKDIR, libfuse, fio, kvfs; KVFS_DESC
# describes the daemon, by default kvfs_msg of KVFS).
machine_md() {
    local KVFS_DESC=${KVFS_DESC:-}
    [ -n "$KVFS_DESC" ] || { [ -f "$KVFS" ] && KVFS_DESC=$(kvfs_msg); }
    local cpu mem os src fs opts size
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    mem=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
    os=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}")
    read -r src fs opts <<< "$(findmnt -no SOURCE,FSTYPE,OPTIONS -T "$WORKDIR" 2>/dev/null)"
    size=$(lsblk -dno SIZE "$src" 2>/dev/null | tr -d ' ')
    echo "* CPU: ${cpu:-unknown}, $(nproc) online cores ($(getconf _NPROCESSORS_CONF) configured); load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "* RAM: $mem GiB; OS: ${os:-?}; kernel $(uname -r)"
    echo "* work dir \`$WORKDIR\`: ${fs:-?} on ${src:-?}${size:+ ($size)}, mount options ${opts:-?}"
    echo "* libfuse $(pkg-config --modversion fuse3 2>/dev/null || echo '?'); $(fio --version 2>/dev/null || echo 'fio ?')"
    echo "* kvfs: commit $(kvfs_commit); daemon \`$KVFS\`${KVFS_DESC:+ ($KVFS_DESC)}"
}

# ----------------------------------------------------- libfuse examples ----
# build_passthroughs BUILD LOGDIR: libfuse's passthrough and passthrough_ll
# examples, built from libfuse3-dev's copies with the feature macros a libfuse
# build on Linux defines (shared/research/baselines.md §1).
PT_EXAMPLES=/usr/share/doc/libfuse3-dev/examples
build_passthroughs() {
    local build=$1 logdir=$2 p
    local -a features=(-DHAVE_SETXATTR -DHAVE_UTIMENSAT -DHAVE_POSIX_FALLOCATE -DHAVE_FALLOCATE -DHAVE_COPY_FILE_RANGE)
    local -a flags
    [ -f "$PT_EXAMPLES/passthrough.c" ] || die "$PT_EXAMPLES/passthrough.c not found (apt-get install libfuse3-dev)"
    mkdir -p "$build" "$logdir"
    cp "$PT_EXAMPLES"/passthrough.c "$PT_EXAMPLES"/passthrough_ll.c "$PT_EXAMPLES"/passthrough_helpers.h "$build"/
    read -r -a flags <<< "$(pkg-config fuse3 --cflags --libs)"
    for p in passthrough passthrough_ll; do
        gcc -O2 -Wall "${features[@]}" -o "$build/$p" "$build/$p.c" "${flags[@]}" \
            > "$logdir/build-$p.log" 2>&1 || { cat "$logdir/build-$p.log" >&2; die "building $p failed"; }
    done
}

# ------------------------------------------------------------ RSS guard ----
# rss_guard_start PID FLAG: SIGKILL our daemon PID (by pid) when its VmRSS
# passes RSS_LIMIT_KB, writing the RSS to FLAG, so that a daemon whose
# memory runs away cannot take the machine down. rss_guard_stop ends it.
RSS_GUARD_PID=""
rss_guard_stop() {
    [ -n "$RSS_GUARD_PID" ] || return 0
    kill "$RSS_GUARD_PID" 2>/dev/null
    wait "$RSS_GUARD_PID" 2>/dev/null
    RSS_GUARD_PID=""
}
rss_guard_start() {
    local pid=$1 flag=$2
    rm -f "$flag"
    (
        trap 'exit 0' TERM
        while kill -0 "$pid" 2>/dev/null; do
            rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || break
            if [ "${rss:-0}" -gt "$RSS_LIMIT_KB" ]; then
                echo "$rss" > "$flag"
                echo "[$(date +%H:%M:%S)] GUARD: daemon pid $pid VmRSS ${rss} kB > limit ${RSS_LIMIT_KB} kB: killing it" >&2
                kill -KILL "$pid" 2>/dev/null
                break
            fi
            sleep 0.5
        done
    ) &
    RSS_GUARD_PID=$!
}
