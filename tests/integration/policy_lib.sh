# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# shellcheck disable=SC2012,SC2010  # ls: the readdir of the mount is what is observed
# Helpers shared by the cache-policy integration tests (test_policy*.sh).
# Source this after lib.sh:
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/policy_lib.sh"
# It reads the stats file strictly (tests/prom_check.py), gets and lists
# contexts, runs a continuous stats sampler, and collects "soft" failures
# that are reported together at the end of a test.

# shellcheck disable=SC2034  # MiB, REC, MAX, SAMPLES etc. are read by the tests
kv_need_py
export PROM_DIR=$KV_REPO/tests
MiB=1048576
HDR=64                      # record header per chunk
REC=$((MiB + HDR))          # stored size of one 1 MiB chunk with codec=none

# ------------------------------------------------------------ stats file ----
# snap MNT: copy MNT/.kvfs/stats to a file, check it strictly, print the path.
snap() {
    local f
    f=$(mktemp "$T/stats.XXXXXX")
    cat "$1/.kvfs/stats" >"$f" || fail "cannot read $1/.kvfs/stats"
    py "$PROM" "$f" >/dev/null 2>"$f.err" ||
        fail "$1/.kvfs/stats is not valid Prometheus text: $(cat "$f.err")"
    printf '%s\n' "$f"
}
# stat1 MNT SERIES: one value of the stats file (which is checked strictly too).
stat1() {
    local f out
    f=$(mktemp "$T/stats.XXXXXX")
    cat "$1/.kvfs/stats" >"$f" || fail "cannot read $1/.kvfs/stats"
    out=$(py "$PROM" "$f" --get "$2" 2>&1) || fail "$1/.kvfs/stats: $out"
    printf '%s\n' "$out"
}
# expect_stats MNT MSG EXPR...: every --expect EXPR holds.
expect_stats() {
    local mnt=$1 msg=$2 f out a
    shift 2
    local -a args=()
    for a in "$@"; do args+=(--expect "$a"); done
    f=$(snap "$mnt")
    out=$(py "$PROM" "$f" "${args[@]}" 2>&1) || fail "$msg: $out"
}

# wait_stored MNT LIMIT TRIES: read kvfs_stored_bytes (every 0.1 s, at most
# TRIES times) until it is <= LIMIT; STORED is the last value read.  The
# caller checks STORED.
wait_stored() {
    local i
    for ((i = 0; i < $3; i++)); do
        STORED=$(stat1 "$1" kvfs_stored_bytes)
        [ "$STORED" -le "$2" ] && break
        sleep 0.1
    done
    return 0
}

# ------------------------------------------------------------- contexts ----
xget() { getfattr --absolute-names --only-values -n "$2" "$1"; }
contexts_of() { ls "$1" | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'; }
listed() { ls "$1" | grep -qxF -- "$2"; }
now() { date +%s.%N; }
elapsed() { py -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }
# wait_gone DIR NAME SECONDS: until NAME is no longer listed in DIR; fails after SECONDS.
wait_gone() {
    local i n=$(($3 * 10))
    for ((i = 0; i < n; i++)); do
        listed "$1" "$2" || return 0
        sleep 0.1
    done
    fail "$1/$2 still listed after $3 s"
}
# mkctx DIR SIZE: a context directory with one file of SIZE random bytes (kept in $T/src).
mkctx() {
    local d=$1 src
    src=$T/src/$(tr / _ <<<"${d#"$T"/}")
    head -c "$2" /dev/urandom >"$src"
    mkdir -p "$d"
    cp "$src" "$d/f"
}
srcof() { printf '%s\n' "$T/src/$(tr / _ <<<"${1#"$T"/}")"; }

# ---------------------------------------------------------- stats sampler ----
cat >"$T/sampler.py" <<'EOF'
# sampler.py STATS OUT STOP DELAY [FSDIR]: parse STATS strictly until STOP
# exists, sleeping DELAY seconds between reads (0: as fast as possible); with
# FSDIR, also sample the free space of FSDIR's filesystem.  Writes
# "max_stored samples" (with FSDIR: "max_stored samples min_avail") to OUT.
import os, sys, time
sys.path.insert(0, os.environ["PROM_DIR"])
import prom_check
stats, out, stop, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
fsdir = sys.argv[5] if len(sys.argv) > 5 else None
lo, mx, n = None, 0, 0
while True:
    last = os.path.exists(stop)
    if fsdir:
        sv = os.statvfs(fsdir)
        avail = sv.f_bavail * sv.f_frsize
        lo = avail if lo is None else min(lo, avail)
    with open(stats) as f:
        series, _ = prom_check.parse(f.read())
    mx = max(mx, int(series[("kvfs_stored_bytes", ())]))
    n += 1
    if last:
        break
    if delay > 0:
        time.sleep(delay)
with open(out, "w") as f:
    f.write("%d %d%s\n" % (mx, n, "" if lo is None else " %d" % lo))
EOF
# start_sampler NAME MNT DELAY [FSDIR]: sample MNT/.kvfs/stats in the
# background (see sampler.py) until stop_sampler NAME.
start_sampler() {
    rm -f "$T/stop-$1"
    py "$T/sampler.py" "$2/.kvfs/stats" "$T/max-$1" "$T/stop-$1" "$3" ${4:+"$4"} 2>"$T/sampler-$1.err" &
    SAMPLER=$!
}
# stop_sampler NAME: sets MAX (stored bytes), SAMPLES and, with FSDIR, MINFREE.
stop_sampler() {
    touch "$T/stop-$1"
    wait "$SAMPLER" || fail "stats sampler ($1) failed: $(cat "$T/sampler-$1.err")"
    MINFREE=""
    read -r MAX SAMPLES MINFREE <"$T/max-$1"
}

# -------------------------------------------------------- soft failures ----
# soft_fail MSG: record a failure and go on (later, independent checks still
# run); soft_done fails the test at the end if any was recorded.
SOFT=()
soft_fail() {
    SOFT+=("$1")
    printf '[%s] FAIL (reported at the end): %s\n' "$KV_TEST_NAME" "$1" >&2
}
# soft_eq ACTUAL EXPECTED MSG: like assert_eq, but as a soft failure.
soft_eq() {
    if [ "$1" != "$2" ]; then
        soft_fail "$3: got '$1', expected '$2'"
    fi
}
# soft_pass MSG: pass MSG unless a soft check failed since the last soft_pass.
SOFT_MARK=0
soft_pass() {
    if [ ${#SOFT[@]} -eq "$SOFT_MARK" ]; then pass "$1"; fi
    SOFT_MARK=${#SOFT[@]}
}
soft_done() {
    [ ${#SOFT[@]} -eq 0 ] && return 0
    local m
    m=$(printf '%s; ' "${SOFT[@]}")
    fail "${#SOFT[@]} earlier check(s) failed: $m"
}
