# shellcheck shell=bash
# shellcheck disable=SC2034  # REPO_ROOT, DAEMON_RC, MACHINE, DF_LINE are read by the benchmarks
# Helpers shared by the benchmarks bench_core.sh and bench_policy.sh.  Source
# it at the top of a benchmark (after `set -u -o pipefail`):
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

# usage [RC]: print lines 2..USAGE_END of the benchmark's header, exit RC.
usage() {
    sed -n "2,${USAGE_END}p" "${BASH_SOURCE[-1]}" | sed 's/^# \{0,1\}//'
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

# bench_abs_kvfs: make KVFS an absolute path.
bench_abs_kvfs() {
    case "$KVFS" in /*) ;; *) KVFS="$PWD/$KVFS" ;; esac
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
