# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Helpers for kvfs integration tests.  Source this from a test script that
# runs under `set -euo pipefail`.
#
# Environment (set by ctest; defaults point into this checkout):
#   KVFS     path to the kvfs daemon       (default: <repo>/build/kvfs)
#   KVFSCTL  path to kvfsctl               (default: <repo>/build/kvfsctl)
#   KV_DATA  directory with real KV tensors (default: <repo>/tests/data/kv)
#   GPU_FAKE, GPUIO  the fake GPU backend and the ioctl client (kv_need_gpu_fake)
#
# Every test gets a private temp dir $T (under ${TMPDIR:-/tmp}).  Daemons are
# started in the foreground (-f) in the background of this shell, their stderr
# goes to a log file, and an EXIT trap unmounts everything and removes temp
# dirs.  Failures print the message plus the tail of every daemon log.

# shellcheck disable=SC2034  # KV_LOG, KV_TRY_OUT etc. are read by the tests
set -o errtrace

KV_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KV_REPO=$(cd "$KV_LIB_DIR/../.." && pwd)
KVFS=${KVFS:-$KV_REPO/build/kvfs}
KVFSCTL=${KVFSCTL:-$KV_REPO/build/kvfsctl}
KV_DATA=${KV_DATA:-$KV_REPO/tests/data/kv}
KV_TEST_NAME=$(basename "$0" .sh)
KV_MAIN_PID=$BASHPID

declare -A KV_PID=()     # mountpoint -> daemon pid
declare -A KV_LOG=()     # mountpoint -> daemon log file (for tests)
declare -A KV_CHILD=()   # mountpoint -> 1 if the daemon is our child (-f)
KV_ALL_LOGS=()           # every daemon log of this test, for failure reports
KV_EXTRA_MOUNTS=()       # non-kvfs mounts (tmpfs) to undo on exit
KV_TMPDIRS=()            # directories to remove on exit
KV_FAILED=0

log()  { printf '[%s] %s\n' "$KV_TEST_NAME" "$*" >&2; }
pass() { printf '[%s] ok: %s\n' "$KV_TEST_NAME" "$*" >&2; }

kv_dump_logs() {
    local l
    for l in "${KV_ALL_LOGS[@]}"; do
        [ -s "$l" ] || continue
        printf -- '----- daemon log %s (last 40 lines) -----\n' "$l" >&2
        tail -n 40 "$l" >&2 || true
    done
}

# fail MSG: report and exit non-zero (cleanup runs from the EXIT trap).
fail() {
    KV_FAILED=1
    printf '[%s] FAIL: %s\n' "$KV_TEST_NAME" "$*" >&2
    # in a $(...) subshell: the main shell reports the rest via its ERR trap
    [ "$BASHPID" = "$KV_MAIN_PID" ] || exit 1
    kv_report_dead_daemons
    kv_dump_logs
    exit 1
}

# check 'COND' MSG: COND is evaluated by the shell (eval); fail with MSG if false.
check() {
    local cond=$1; shift
    if ! eval "$cond"; then
        fail "${*:-check failed}  [condition: $cond]"
    fi
}

# assert_eq ACTUAL EXPECTED MSG
assert_eq() {
    if [ "$1" != "$2" ]; then
        fail "$3: got '$1', expected '$2'"
    fi
}

# expect_fail PATTERN MSG CMD...: CMD must exit non-zero and its stderr+stdout
# must match the extended regex PATTERN (case-insensitive; '' = any).
expect_fail() {
    local pat=$1 msg=$2 out rc=0; shift 2
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -eq 0 ]; then
        fail "$msg: '$*' succeeded but should have failed (output: $out)"
    fi
    if [ -n "$pat" ] && ! grep -qiE -- "$pat" <<<"$out"; then
        fail "$msg: '$*' failed (rc=$rc) but output does not match /$pat/: $out"
    fi
}

# Trap for commands that fail unexpectedly under set -e.
kv_on_err() {
    local rc=$? cmd=$1 line=$2
    [ "$BASHPID" = "$KV_MAIN_PID" ] || return 0
    fail "line $line: command exited $rc: $cmd"
}
trap 'kv_on_err "$BASH_COMMAND" "$LINENO"' ERR

# kv_mktemp VAR PARENT: create a temp dir under PARENT, removed on exit.
kv_mktemp() {
    local d
    d=$(mktemp -d "$2/kvfs-$KV_TEST_NAME.XXXXXX") || fail "mktemp -d in $2 failed"
    KV_TMPDIRS+=("$d")
    printf -v "$1" '%s' "$d"
}

kv_is_mounted() {
    # mountpoint(1) may stat the path, which fails on a dead FUSE mount; ask
    # the kernel's mount table instead (paths in mountinfo escape spaces).
    local m=$1
    awk -v m="$m" '$5 == m { found=1 } END { exit !found }' /proc/self/mountinfo
}

kv_pid_alive() {
    local pid=$1 st
    kill -0 "$pid" 2>/dev/null || return 1
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$st" != Z ]
}

kv_report_dead_daemons() {
    local m
    for m in "${!KV_PID[@]}"; do
        if ! kv_pid_alive "${KV_PID[$m]}"; then
            printf '[%s] daemon for %s (pid %s) is no longer running\n' \
                "$KV_TEST_NAME" "$m" "${KV_PID[$m]}" >&2
        fi
    done
}

# kv_assert_alive: fail if any of our daemons has died or lost its mount.
kv_assert_alive() {
    local m
    for m in "${!KV_PID[@]}"; do
        kv_pid_alive "${KV_PID[$m]}" ||
            fail "kvfs daemon for $m (pid ${KV_PID[$m]}) exited unexpectedly"
        kv_is_mounted "$m" || fail "$m is no longer mounted"
    done
}

# kv_mount STORE MNT [OPTS]: start "$KVFS -f [-o OPTS] STORE MNT" in the
# background and wait (<= 10 s) until MNT is a mountpoint.
kv_mount() {
    local store=$1 mnt=${2%/} opts=${3:-} pid i log
    mkdir -p "$mnt"
    log=$(mktemp "${T:-${TMPDIR:-/tmp}}/kvfs-daemon.XXXXXX")
    KV_ALL_LOGS+=("$log")
    local -a args=(-f)
    if [ -n "$opts" ]; then args+=(-o "$opts"); fi
    printf '+ %s %s %s %s\n' "$KVFS" "${args[*]}" "$store" "$mnt" >"$log"
    "$KVFS" "${args[@]}" "$store" "$mnt" >>"$log" 2>&1 &
    pid=$!
    KV_PID[$mnt]=$pid KV_LOG[$mnt]=$log KV_CHILD[$mnt]=1
    for ((i = 0; i < 200; i++)); do
        if kv_is_mounted "$mnt" && mountpoint -q "$mnt"; then
            return 0
        fi
        if ! kv_pid_alive "$pid"; then
            local rc=0
            wait "$pid" || rc=$?
            unset "KV_PID[$mnt]"
            fail "kvfs exited (rc=$rc) before mounting $mnt (opts '$opts')"
        fi
        sleep 0.05
    done
    fail "kvfs did not mount $mnt within 10 s (opts '$opts')"
}

# kv_adopt MNT: register a daemonized kvfs (started without -f) serving MNT.
kv_adopt() {
    local mnt=${1%/} p arg found="" exe
    # KV_DAEMON_EXE: the daemon's executable if KVFS is a wrapper script
    exe=$(readlink -f "${KV_DAEMON_EXE:-$KVFS}")
    for p in /proc/[0-9]*; do
        [ -r "$p/cmdline" ] || continue
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$exe" ] || continue
        while IFS= read -r -d '' arg; do
            if [ "$arg" = "$mnt" ]; then found=${p#/proc/}; fi
        done <"$p/cmdline" 2>/dev/null || true
        [ -n "$found" ] && break
    done
    [ -n "$found" ] || fail "cannot find the kvfs process serving $mnt"
    KV_PID[$mnt]=$found KV_CHILD[$mnt]=0
}

# kv_umount MNT: unmount (retrying while busy) and wait for the daemon to exit
# with status 0.
kv_umount() {
    local mnt=${1%/} i pid rc=0 err=""
    pid=${KV_PID[$mnt]:-}
    if [ -n "$pid" ] && ! kv_pid_alive "$pid"; then
        fail "kvfs daemon for $mnt (pid $pid) died before unmount"
    fi
    for ((i = 0; i < 50; i++)); do
        err=$(fusermount3 -u "$mnt" 2>&1) && break
        sleep 0.1
    done
    if kv_is_mounted "$mnt"; then
        fail "cannot unmount $mnt: $err"
    fi
    [ -n "$pid" ] || return 0
    for ((i = 0; i < 300; i++)); do
        kv_pid_alive "$pid" || break
        sleep 0.05
    done
    if kv_pid_alive "$pid"; then
        fail "kvfs daemon for $mnt (pid $pid) still running 15 s after unmount"
    fi
    if [ "${KV_CHILD[$mnt]}" = 1 ]; then
        wait "$pid" || rc=$?
    fi
    unset "KV_PID[$mnt]" "KV_CHILD[$mnt]"
    if [ "$rc" -ne 0 ]; then
        fail "kvfs daemon for $mnt exited with status $rc after unmount"
    fi
}

# kv_remount STORE MNT [OPTS]
kv_remount() { kv_umount "$2"; kv_mount "$@"; }

# kv_try STORE MNT [KVFS-ARGS...]: run kvfs *without* -f (so a wrongly
# successful start returns instead of blocking), expecting it to refuse.
# Sets KV_TRY_RC and KV_TRY_OUT.  Fails the test if MNT got mounted.
kv_try() {
    local store=$1 mnt=${2%/}; shift 2
    mkdir -p "$mnt"
    KV_TRY_RC=0
    KV_TRY_OUT=$(timeout 15 "$KVFS" "$@" "$store" "$mnt" 2>&1) || KV_TRY_RC=$?
    if kv_is_mounted "$mnt"; then
        kv_adopt "$mnt"
        kv_umount "$mnt"
        fail "kvfs $* $store $mnt mounted but should have been refused (rc=$KV_TRY_RC)"
    fi
    if [ "$KV_TRY_RC" -eq 124 ]; then
        fail "kvfs $* $store $mnt did not exit within 15 s (it should refuse at once): $KV_TRY_OUT"
    fi
}

# kv_info STORE KEY: value of "KEY: value" from `kvfsctl info STORE`.
kv_info() {
    local out
    out=$("$KVFSCTL" info "$1" 2>&1) || fail "kvfsctl info $1 failed: $out"
    awk -F': *' -v k="$2" '$1 == k { print $2; found=1 } END { exit !found }' <<<"$out" ||
        fail "kvfsctl info $1 has no '$2:' line; output was: $out"
}

# kv_records_settled MNT: wait (up to 20 s) until the daemon has written
# the inode records of every change (kvfs_inode_records_due 0; they are
# written in batches within 0.1 s), so that a rebuild sees them all.
kv_records_settled() {
    local i due
    for ((i = 0; i < 200; i++)); do
        due=$(awk '$1 == "kvfs_inode_records_due" { print $2 }' "$1/.kvfs/stats")
        [ "$due" = 0 ] && return 0
        sleep 0.1
    done
    fail "$1: inode records still due after 20 s (kvfs_inode_records_due $due)"
}

du_stored()   { du -B1 "$1" | cut -f1; }
du_apparent() { du -B1 --apparent-size "$1" | cut -f1; }

# snapshot DIR: a listing that changes when anything in DIR is modified.
kv_snapshot() {
    (
        cd "$1" &&
            find . -printf '%y %m %u:%g %s %T@ %p -> %l\n' | LC_ALL=C sort &&
            find . -type f -exec sha256sum {} + | LC_ALL=C sort -k2 &&
            ls -lA --time-style=full-iso .
    )
}

kv_cleanup() {
    local rc=$? m i
    [ "$BASHPID" = "$KV_MAIN_PID" ] || return 0
    trap - ERR
    set +e
    for m in "${!KV_PID[@]}"; do
        if kv_is_mounted "$m"; then
            fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
        fi
        for ((i = 0; i < 100; i++)); do
            kv_pid_alive "${KV_PID[$m]}" || break
            sleep 0.05
        done
        if kv_pid_alive "${KV_PID[$m]}"; then
            kill "${KV_PID[$m]}" 2>/dev/null
            sleep 0.5
            kill -9 "${KV_PID[$m]}" 2>/dev/null
        fi
    done
    # anything else still mounted below our temp dirs (e.g. a daemon we could
    # not identify): unmount it, innermost first
    for m in "${KV_TMPDIRS[@]}"; do
        awk -v p="$m/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | LC_ALL=C sort -r |
            while IFS= read -r i; do
                [[ " ${KV_EXTRA_MOUNTS[*]} " == *" $i "* ]] && continue
                fusermount3 -u "$i" 2>/dev/null || fusermount3 -uz "$i" 2>/dev/null || umount -l "$i"
            done
    done
    for ((i = ${#KV_EXTRA_MOUNTS[@]} - 1; i >= 0; i--)); do
        m=${KV_EXTRA_MOUNTS[$i]}
        kv_is_mounted "$m" && { umount "$m" 2>/dev/null || umount -l "$m"; }
    done
    for m in "${KV_TMPDIRS[@]}"; do
        # never recurse into something still mounted
        if grep -qF " $m/" /proc/self/mountinfo; then
            log "not removing $m: something below it is still mounted"
            continue
        fi
        rm -rf "$m"
    done
    if [ "$rc" -eq 0 ] && [ "$KV_FAILED" = 0 ]; then
        log "PASS"
    elif [ "$rc" -eq 77 ] && [ "$KV_FAILED" = 0 ]; then
        log "SKIPPED"
    else
        log "FAILED (exit $rc)"
    fi
    exit "$rc"
}
trap kv_cleanup EXIT

# kv_small_fs DIR SIZE: a tmpfs of SIZE (such as 32m) mounted on DIR
# (created), undone on exit; the test is skipped (77) when not root.
kv_small_fs() {
    if [ "$(id -u)" -ne 0 ]; then
        log "SKIP: needs root to mount a tmpfs"
        exit 77
    fi
    mkdir -p "$1"
    mount -t tmpfs -o "size=$2" tmpfs "$1"
    KV_EXTRA_MOUNTS+=("$1")
}

# kv_need_kv_data: SRC is one context of real KV tensors (KV_DATA/gpl3);
# the test fails when they are missing.
kv_need_kv_data() {
    SRC=$KV_DATA/gpl3
    [ -f "$SRC/layer0.k.f16" ] || fail "KV_DATA=$KV_DATA has no gpl3/layer0.k.f16"
}

# kv_need_gpu_fake: GPU_FAKE, the fake GPU backend (an absolute path), and
# GPUIO, the raw ioctl client (ctest sets both; defaults: build/).
kv_need_gpu_fake() {
    GPU_FAKE=${GPU_FAKE:-$KV_REPO/build/tests/libkvfs-gpu-fake.so}
    GPUIO=${GPUIO:-$KV_REPO/build/kvfs-test-gpuio}
    [ -x "$GPUIO" ] || fail "GPUIO=$GPUIO is not an executable (build kvfs-test-gpuio)"
    [ -f "$GPU_FAKE" ] || fail "GPU_FAKE=$GPU_FAKE does not exist (build kvfs-gpu-fake)"
    GPU_FAKE=$(readlink -f "$GPU_FAKE")
}

# kv_need_other_user: the test is skipped (77) unless it runs as root and
# setpriv is there; then as_nobody CMD... runs CMD as user nobody.
kv_need_other_user() {
    command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) not installed"; exit 77; }
    [ "$(id -u)" = 0 ] || { echo "SKIP: needs root to mount and to switch users"; exit 77; }
}
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }

# kv_need_py: PY, the python3 interpreter itself (not a pyenv shim); py
# ARGS... runs it without site packages (the helpers need only the standard
# library, and each call is much faster); PROM, the strict checker of the
# stats file (tests/prom_check.py).
kv_need_py() {
    PY=$(python3 -c 'import sys; print(sys.executable)')
    PROM=$KV_REPO/tests/prom_check.py
}
py() { "$PY" -S -B "$@"; }

kv_require() {
    [ -x "$KVFS" ] || fail "KVFS=$KVFS is not an executable (build first)"
    [ -e /dev/fuse ] || fail "/dev/fuse is missing"
    command -v fusermount3 >/dev/null || fail "fusermount3 is not installed"
}

kv_require
kv_mktemp T "${TMPDIR:-/tmp}"
export T
