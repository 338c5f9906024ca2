#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run_all.sh - the one command that benchmarks kvfs against its baselines on
# this machine and draws the results.
#
# Usage: sudo bash tests/bench/run_all.sh [--quick] [--dir WORKDIR] [--out DIR]
#            [--kvfs PATH] [--fio-args "ARGS"] [--meta-args "ARGS"] [--only LIST]
#
# Runs bench_fio.sh, then each of bench_meta.sh, bench_rss.sh and
# bench_codec_cli.sh that is present and executable, every one with
# --dir WORKDIR/<name> --results WORKDIR/results (and --quick); then plot.sh
# on WORKDIR/results; then writes OUT/results.md (the machine, every
# benchmark's markdown fragment in the order they ran, its charts) and copies
# the charts and the TSV files to OUT.  --quick: small sizes and one run, a
# smoke test of a few minutes.  --fio-args: more options for bench_fio.sh
# (e.g. "--size 512"); --meta-args: the same for bench_meta.sh (e.g.
# "--files 20000").  --only: a comma-separated subset of fio,meta,rss,
# codec_cli.  Defaults: WORKDIR /var/tmp/kvfs-bench-all, OUT docs/bench of
# the repository.  See tests/bench/README.md.

set -u -o pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

QUICK=0
WORKDIR=/var/tmp/kvfs-bench-all
OUT=""
KVFS="$REPO_ROOT/build/kvfs"
FIO_ARGS=""
META_ARGS=""
ONLY=""
USAGE_END=19
ARGS_TEXT="$*"

while [ $# -gt 0 ]; do
    case "$1" in
        --quick)    QUICK=1; shift ;;
        --dir)      WORKDIR=${2:?}; shift 2 ;;
        --out)      OUT=${2:?}; shift 2 ;;
        --kvfs)     KVFS=${2:?}; shift 2 ;;
        --fio-args) FIO_ARGS=${2?}; shift 2 ;;
        --meta-args) META_ARGS=${2?}; shift 2 ;;
        --only)     ONLY=${2:?}; shift 2 ;;
        -h|--help)  usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

bench_check_env gnuplot python3 fio
bench_abs_kvfs
bench_check_workdir
OUT=${OUT:-$REPO_ROOT/docs/bench}
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd -P)
RESULTS="$WORKDIR/results"
PLOTS="$WORKDIR/plots"
LOGDIR="$WORKDIR/logs"
rm -rf "$RESULTS" "$PLOTS"
mkdir -p "$RESULTS" "$PLOTS" "$LOGDIR"

# The daemon as it is now; the benchmarks are told to use KVFS, so a rebuild
# during the run is worth a warning in the results.
KVFS_SHA0=""
if [ -f "$KVFS" ]; then
    KVFS_DESC="$(kvfs_msg), at the start of the run"
    KVFS_SHA0=$(sha256sum "$KVFS" | cut -c1-12)
fi
MACHINE_MD=$(machine_md)

declare -a NAMES=() ORDER_MD=()
declare -A RC=() SECS=() WHY=()
T0=$(date +%s)

# run_bench NAME SCRIPT ARGS...: run one benchmark; remember its rc, its wall
# time and the markdown fragments it wrote, in order.
run_bench() {
    local name=$1 script=$2 t0 rc f
    shift 2
    NAMES+=("$name")
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then
        WHY[$name]="not selected (--only $ONLY)"; log "$name: not in --only $ONLY, skipped"; return 0
    fi
    if [ ! -e "$script" ]; then
        WHY[$name]="not present"; log "$name: $script not present, skipped"; return 0
    fi
    if [ ! -x "$script" ]; then
        WHY[$name]="present but not executable"; log "$name: $script is not executable, skipped"; return 0
    fi
    log "=== $name: $script $*"
    touch "$WORKDIR/.mark-$name"
    t0=$(date +%s)
    "$script" "$@" 2>&1 | tee "$LOGDIR/$name.log"
    rc=${PIPESTATUS[0]}
    RC[$name]=$rc
    SECS[$name]=$(( $(date +%s) - t0 ))
    log "=== $name: rc=$rc, ${SECS[$name]} s"
    while IFS= read -r f; do
        [[ " ${ORDER_MD[*]} " == *" $f "* ]] || ORDER_MD+=("$f")
    done < <(find "$RESULTS" -maxdepth 1 -name '*.md' -newer "$WORKDIR/.mark-$name" -printf '%T@ %p\n' | sort -n | cut -d' ' -f2-)
}

quick=()
[ "$QUICK" = 1 ] && quick=(--quick)
read -r -a fio_extra <<< "$FIO_ARGS"
read -r -a meta_extra <<< "$META_ARGS"

run_bench fio "$SCRIPT_DIR/bench_fio.sh" --dir "$WORKDIR/fio" --results "$RESULTS" --kvfs "$KVFS" "${quick[@]}" "${fio_extra[@]}"
for b in meta rss codec_cli; do
    extra=()
    [ "$b" = meta ] && extra=("${meta_extra[@]}")
    run_bench "$b" "$SCRIPT_DIR/bench_$b.sh" --dir "$WORKDIR/$b" --results "$RESULTS" --kvfs "$KVFS" "${quick[@]}" "${extra[@]}"
done

log "=== plots: $SCRIPT_DIR/plot.sh $RESULTS $PLOTS"
PLOT_RC=0
bash "$SCRIPT_DIR/plot.sh" "$RESULTS" "$PLOTS" > "$LOGDIR/plot.list" 2> "$LOGDIR/plot.log" || PLOT_RC=$?
[ "$PLOT_RC" -eq 0 ] || { log "plot.sh failed (rc=$PLOT_RC):"; cat "$LOGDIR/plot.log" >&2; }
T1=$(date +%s)

# ------------------------------------------------------------ results.md ----
# Other fragments in RESULTS that no benchmark was seen writing come last.
while IFS= read -r f; do
    [[ " ${ORDER_MD[*]} " == *" $f "* ]] || ORDER_MD+=("$f")
done < <(find "$RESULTS" -maxdepth 1 -name '*.md' | sort)

pngs_of() {             # pngs_of TSV: the charts of its sections, in order (plot.sh's index)
    awk -F'\t' -v f="$(basename "$1")" '$2 == f { print $1 }' "$PLOTS/index.tsv" 2>/dev/null
}

declare -A SHOWN=()
{
    echo "# kvfs benchmark results"
    echo
    echo "Produced by \`sudo bash tests/bench/run_all.sh${ARGS_TEXT:+ $ARGS_TEXT}\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $((T1 - T0)) s in all$([ "$QUICK" = 1 ] && echo " (**--quick**: smoke-test sizes, one run; not figures to quote)"). Every figure of a benchmark was measured in the same run as the baselines it is compared with."
    echo
    echo "## Machine"
    echo
    echo "$MACHINE_MD"
    if [ -n "$KVFS_SHA0" ] && [ "$(sha256sum "$KVFS" 2>/dev/null | cut -c1-12)" != "$KVFS_SHA0" ]; then
        echo "* **\`$KVFS\` changed during the run** (sha256 $KVFS_SHA0 at the start, $(sha256sum "$KVFS" 2>/dev/null | cut -c1-12) at the end): benchmarks that started it after the change measured another binary (bench_fio.sh runs a copy taken when it starts)."
    fi
    echo
    echo "## Benchmarks"
    echo
    echo "| benchmark | result | wall time |"
    echo "|---|---|---|"
    for n in "${NAMES[@]}"; do
        if [ -n "${WHY[$n]:-}" ]; then
            echo "| $n | skipped: ${WHY[$n]} | – |"
        else
            echo "| $n | $([ "${RC[$n]}" -eq 0 ] && echo ok || echo "**failed (exit status ${RC[$n]})**, log \`$LOGDIR/$n.log\`") | ${SECS[$n]} s |"
        fi
    done
    echo "| plots | $([ "$PLOT_RC" -eq 0 ] && echo ok || echo "**failed**, log \`$LOGDIR/plot.log\`") | – |"
    echo
    for f in "${ORDER_MD[@]}"; do
        cat "$f"
        echo
        for p in $(pngs_of "${f%.md}.tsv"); do
            echo "![${p%.png}]($p)"
            echo
            SHOWN[$p]=1
        done
    done
    rest=()
    while IFS= read -r p; do
        p=$(basename "$p")
        [ -n "${SHOWN[$p]:-}" ] || rest+=("$p")
    done < <(find "$PLOTS" -maxdepth 1 -name '*.png' | sort)
    if [ ${#rest[@]} -gt 0 ]; then
        echo "## Other charts"
        echo
        for p in "${rest[@]}"; do echo "![${p%.png}]($p)"; echo; done
    fi
    links() { find "$1" -maxdepth 1 -name "$2" -printf '%f\n' | sort | awk '{ printf "%s[%s](%s)", (NR > 1 ? ", " : ""), $1, $1 }'; }
    echo "Charts: $(links "$PLOTS" '*.png'). Per-run values: $(links "$RESULTS" '*.tsv') (columns section, metric, target, jobs, run, value, unit)."
} > "$WORKDIR/results.md"

cp "$PLOTS"/*.png "$OUT"/ 2>/dev/null
cp "$RESULTS"/*.tsv "$OUT"/ 2>/dev/null
cp "$WORKDIR/results.md" "$OUT/results.md"
log "wrote $OUT/results.md, $(find "$PLOTS" -maxdepth 1 -name '*.png' | wc -l) charts ($((T1 - T0)) s)"

rc=$PLOT_RC
for n in "${NAMES[@]}"; do [ "${RC[$n]:-0}" -eq 0 ] || rc=1; done
exit "$rc"
