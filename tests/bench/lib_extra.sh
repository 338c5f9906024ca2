# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# shellcheck disable=SC2034  # variables set here are read by the benchmarks
# Helpers shared by bench_meta.sh, bench_codec_cli.sh and bench_rss.sh, on
# top of lib.sh.  Source it after lib.sh:
#   . "$SCRIPT_DIR/lib.sh"; . "$SCRIPT_DIR/lib_extra.sh"
#
# Results: every benchmark writes RESULTS/<name>.tsv with the columns
#   section metric target jobs run value unit
# (tab-separated, a header line, one row per measured run) and
# RESULTS/<name>.md, a markdown fragment.

# x_kv_files: set KV_FILES (array) to the real KV tensors of the given
# suffix (f16 or bf16): shared/data/kv/stories260k when present, else the
# repository's tests/data/kv.  KV_ROOT is the directory they came from.
x_kv_files() {
    local suffix=$1 root f
    KV_FILES=()
    for root in "$REPO_ROOT/../shared/data/kv/stories260k" /work/shared/data/kv/stories260k \
                "$REPO_ROOT/tests/data/kv"; do
        for f in "$root"/*/*."$suffix"; do [ -f "$f" ] && KV_FILES+=("$f"); done
        if [ ${#KV_FILES[@]} -gt 0 ]; then
            KV_ROOT=$(cd "$root" && pwd -P)
            return 0
        fi
    done
    return 1
}

# x_kv_pool FILE MIB: FILE = MIB MiB of real KV data (the f16 and bf16 tensors
# concatenated over and over); kept while its size and source stay the same.
x_kv_pool() {
    local out=$1 mib=$2 bytes desc per reps i
    local -a files=()
    x_kv_files f16 || die "no KV tensors found (shared/data/kv/stories260k or tests/data/kv)"
    files=("${KV_FILES[@]}")
    x_kv_files bf16 && files+=("${KV_FILES[@]}")
    bytes=$((mib * 1048576))
    desc="${#files[@]} fp16/bf16 tensors from $KV_ROOT, $(cat "${files[@]}" | wc -c) bytes, concatenated repeatedly"
    if [ -f "$out" ] && [ "$(stat -c %s "$out")" = "$bytes" ] && [ "$(cat "$out.desc" 2>/dev/null)" = "$desc" ]; then
        POOL_DESC=$desc; return 0
    fi
    per=$(cat "${files[@]}" | wc -c)
    reps=$(( (bytes + per - 1) / per ))
    for ((i = 0; i < reps; i++)); do cat "${files[@]}"; done | head -c "$bytes" > "$out.tmp"
    [ "$(stat -c %s "$out.tmp" 2>/dev/null)" = "$bytes" ] && mv "$out.tmp" "$out" || die "cannot create $out"
    echo "$desc" > "$out.desc"
    POOL_DESC=$desc
}

# x_snapshot_kvfs: copy KVFS, and kvfsctl and kvfs-bench-codec from the same
# directory, to WORKDIR/bin and point KVFS there, so that a rebuild of the
# build directory during the run (others work on the daemon) does not change
# the binaries under test.  KVFS_ORIG keeps the original path.
x_snapshot_kvfs() {
    local src f i
    src=$(dirname "$KVFS"); KVFS_ORIG=$KVFS
    mkdir -p "$WORKDIR/bin" || die "cannot create $WORKDIR/bin"
    for i in 1 2 3; do          # a binary being relinked right now may be incomplete
        for f in "$(basename "$KVFS")" kvfsctl kvfs-bench-codec; do
            [ -f "$src/$f" ] || continue
            cp -p "$src/$f" "$WORKDIR/bin/$f.tmp" && mv -f "$WORKDIR/bin/$f.tmp" "$WORKDIR/bin/$f" ||
                die "cannot copy $src/$f to $WORKDIR/bin"
        done
        "$WORKDIR/bin/$(basename "$KVFS")" --version >/dev/null 2>&1 && break
        sleep 5
    done
    KVFS="$WORKDIR/bin/$(basename "$KVFS")"
}

# -------------------------------------------------------------- results ----
# tsv_init FILE: start a result file (header line).
tsv_init() {
    TSV=$1
    mkdir -p "$(dirname "$TSV")" || die "cannot create $(dirname "$TSV")"
    printf 'section\tmetric\ttarget\tjobs\trun\tvalue\tunit\n' > "$TSV"
}
# tsv_add SECTION METRIC TARGET JOBS RUN VALUE UNIT
tsv_add() {
    [ $# -eq 7 ] || { log "tsv_add: 7 fields expected, got $#: $*"; return 1; }
    [ -n "$6" ] || return 0
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$TSV"
}
# tsv_vals SECTION METRIC TARGET -> the values, space-separated, in run order
tsv_vals() {
    awk -F'\t' -v s="$1" -v m="$2" -v t="$3" \
        'NR > 1 && $1 == s && $2 == m && $3 == t { printf "%s ", $6 }' "$TSV"
}

# Statistics over a space-separated list of numbers (stdin).
x_median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print ""; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
x_minmax() { tr ' ' '\n' | awk 'NF' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) print lo "–" hi }'; }
# x_fmt VALUE [FMT]: numbers printed with FMT, default: integers as they
# are, others with 3 significant digits
x_fmt() {
    awk -v v="$1" -v f="${2:-}" 'BEGIN {
        if (v == "") { print "–"; exit }
        if (f != "") { printf f "\n", v; exit }
        a = v < 0 ? -v : v
        if (a >= 100 || v == int(v)) printf "%.0f\n", v
        else if (a >= 10) printf "%.1f\n", v
        else if (a >= 1) printf "%.2f\n", v
        else printf "%.3g\n", v }'
}
# x_cell "v1 v2 ..." [FMT] -> "median (min–max)", "median" for one value, "–" for none
x_cell() {
    local m lo hi n
    m=$(echo "$1" | x_median)
    [ -n "$m" ] || { echo "–"; return; }
    n=$(echo "$1" | wc -w)
    if [ "$n" -gt 1 ]; then
        IFS='–' read -r lo hi <<< "$(echo "$1" | x_minmax)"
        echo "$(x_fmt "$m" "${2:-}") ($(x_fmt "$lo" "${2:-}")–$(x_fmt "$hi" "${2:-}"))"
    else
        x_fmt "$m" "${2:-}"
    fi
}
# x_ratio A B [FMT] -> A/B ("" when either is empty or B is 0)
x_ratio() {
    awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print ""; else printf f "\n", a / b }'
}
# x_ge A B -> true when A >= B (numbers)
x_ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && b != "" && a + 0 >= b + 0) }'; }

# tsv_stats: load the statistics of every (section, metric, target) of TSV
# in one pass, for the report: med S M T -> the median; cell S M T [FMT] ->
# "median (min–max)" (FMT: a printf format; default: integers as they are,
# others with 3 significant digits), "median" for one run, "–" for none.
declare -A ST_MED=() ST_CELL=() ST_LO=() ST_HI=() ST_N=()
tsv_stats() {
    local k m c lo hi n
    ST_MED=(); ST_CELL=(); ST_LO=(); ST_HI=(); ST_N=()
    while IFS=$'\t' read -r k m c lo hi n; do
        ST_MED[$k]=$m; ST_CELL[$k]=$c; ST_LO[$k]=$lo; ST_HI[$k]=$hi; ST_N[$k]=$n
    done < <(awk -F'\t' '
        function f(v, a) { a = v < 0 ? -v : v
            if (a >= 100 || v == int(v)) return sprintf("%.0f", v)
            if (a >= 10) return sprintf("%.1f", v)
            if (a >= 1) return sprintf("%.2f", v)
            return sprintf("%.3g", v) }
        NR > 1 && $6 != "" { k = $1 "|" $2 "|" $3; n[k]++; v[k, n[k]] = $6 + 0 }
        END { for (k in n) {
            c = n[k]; for (i = 1; i <= c; i++) w[i] = v[k, i]
            for (i = 2; i <= c; i++) { x = w[i]; for (j = i - 1; j >= 1 && w[j] > x; j--) w[j + 1] = w[j]; w[j + 1] = x }
            m = (c % 2) ? w[(c + 1) / 2] : (w[c / 2] + w[c / 2 + 1]) / 2
            cell = (c > 1 && w[1] != w[c]) ? f(m) " (" f(w[1]) "–" f(w[c]) ")" : f(m)
            printf "%s\t%s\t%s\t%s\t%s\t%d\n", k, m, cell, w[1], w[c], c } }' "$TSV")
}
med() { echo "${ST_MED[$1|$2|$3]:-}"; }
cell() {
    local k="$1|$2|$3" f=${4:-}
    [ -n "${ST_MED[$k]:-}" ] || { echo "–"; return; }
    if [ -z "$f" ]; then echo "${ST_CELL[$k]}"
    elif [ "${ST_N[$k]}" -gt 1 ] && [ "${ST_LO[$k]}" != "${ST_HI[$k]}" ]; then
        # shellcheck disable=SC2059
        printf "$f ($f–$f)\n" "${ST_MED[$k]}" "${ST_LO[$k]}" "${ST_HI[$k]}"
    else
        # shellcheck disable=SC2059
        printf "$f\n" "${ST_MED[$k]}"
    fi
}

# x_header_lines: the common "when, where, what" lines of a markdown fragment
x_header_lines() {
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); machine: $MACHINE; load average at start $LOAD0."
    echo
    echo "kvfs: \`${KVFS_ORIG:-$KVFS}\`${KVFS_ORIG:+, copied at the start of the run to \`$KVFS\`} ($(kvfs_msg)); commit $(git -C "$REPO_ROOT" log -1 --format='%h' 2>/dev/null)$(
        [ -z "$(git -C "$REPO_ROOT" status --porcelain -- src include 2>/dev/null)" ] || echo " (src/ or include/ modified)")."
}

# ------------------------------------------------------- machine, env ----
x_describe() {          # sets MACHINE, DF_LINE, LOAD0, MEM_KB
    MEM_KB=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
    describe_machine $((MEM_KB / 1048576)) "$(pkg-config --modversion fuse3 2>/dev/null || echo '?')" "${1:-}"
    LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
}

# ------------------------------------------------------------- daemons ----

# x_start LOGFILE COMMAND...: start a FUSE daemon (in the foreground mode,
# as our child) that mounts on MNT; sets DPID; returns 0 once MNT is a mount
# point, 1 when the daemon exits first or nothing is mounted within 60 s.
x_start() {
    local logf=$1 i
    shift
    mkdir -p "$MNT"
    "$@" >>"$logf" 2>&1 &
    DPID=$!
    rss_guard_start "$DPID" "$GUARD_FLAG"
    for ((i = 0; i < 6000; i++)); do
        if mountpoint -q "$MNT" 2>/dev/null; then return 0; fi
        if ! kill -0 "$DPID" 2>/dev/null; then
            wait "$DPID" 2>/dev/null; DAEMON_RC=$?; DPID=""
            rss_guard_stop
            log "ERROR: $1 exited (rc=$DAEMON_RC) before mounting; log: $logf"
            force_unmount
            return 1
        fi
        sleep 0.01
    done
    log "ERROR: $1 did not mount within 60 s; log: $logf"
    stop_daemon
    return 1
}

x_guard_note() {        # a note when the guard fired, else nothing
    [ -s "$GUARD_FLAG" ] || return 0
    echo "daemon SIGKILLed by the bench's RSS guard at VmRSS $(( $(cat "$GUARD_FLAG") / 1024 )) MiB"
}

x_status_kb() {         # x_status_kb FIELD -> kB of our daemon ("" if gone)
    [ -n "$DPID" ] || return 0
    awk -v f="$1:" '$1 == f { print $2 }' "/proc/$DPID/status" 2>/dev/null
}

x_stat_metric() {       # x_stat_metric NAME -> value from MNT/.kvfs/stats ("" when absent)
    awk -v n="$1" '$1 == n { print $2; exit }' "$MNT/.kvfs/stats" 2>/dev/null
}

