#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench_codec_cli.sh - kvfs's codecs (kvfs-bench-codec: ratio and one-core
# compress/decompress speed, with and without byte shuffle) on the real KV
# tensors, against the lz4 -1 and zstd -3 command-line tools on the same
# files, and kvfs's lossless ratio against the byte-split + zstd -3 figures
# of shared/data/kv/ratios_f16.md.
#
# Usage: bash tests/bench/bench_codec_cli.sh [--dir WORKDIR] [--results DIR] [--quick] [--runs N]
#            [--kvfs PATH] [--cli-mib MiB]
# See tests/bench/README.md for the method.  Needs lz4 and zstd (the CLIs).

# shellcheck disable=SC2034  # USAGE_END, DPID, RSS_LIMIT_KB, DAEMON_WAIT_S are read by lib.sh and lib_extra.sh
set -u -o pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"
# shellcheck source=lib_extra.sh
. "$SCRIPT_DIR/lib_extra.sh"

WORKDIR=/var/tmp/kvfs-bench-codec
RESULTS=""
QUICK=0
RUNS=""                 # default 3, --quick 1
KVFS="$REPO_ROOT/build/kvfs"
CLI_MIB=""              # input per timed CLI process: default 256, --quick 64
LZ4_DEC_TARGET=1000     # MB/s per core, lz4 path decode
USAGE_END=11

while [ $# -gt 0 ]; do
    case "$1" in
        --dir)     WORKDIR=${2:?}; shift 2 ;;
        --results) RESULTS=${2:?}; shift 2 ;;
        --quick)   QUICK=1; shift ;;
        --runs)    RUNS=${2:?}; shift 2 ;;
        --kvfs)    KVFS=${2:?}; shift 2 ;;
        --cli-mib) CLI_MIB=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done
[ "$QUICK" = 1 ] && : "${CLI_MIB:=64}" "${RUNS:=1}"
: "${RUNS:=3}"
: "${CLI_MIB:=256}" "${RESULTS:=$WORKDIR/results}"
posint "$RUNS" || die "--runs must be a positive integer"
posint "$CLI_MIB" || die "--cli-mib must be a positive integer"

if ! command -v lz4 >/dev/null || ! command -v zstd >/dev/null; then
    log "installing the lz4 and zstd command-line tools"
    apt-get install -y lz4 zstd > /dev/null 2>&1 || die "lz4/zstd CLI missing and apt-get install lz4 zstd failed"
fi
command -v awk >/dev/null || die "missing tool: awk"
bench_abs_kvfs
[ -x "$(dirname "$KVFS")/kvfs-bench-codec" ] || die "$(dirname "$KVFS")/kvfs-bench-codec not found (cmake --build build builds it)"
mkdir -p "$WORKDIR" "$RESULTS" || die "cannot create $WORKDIR or $RESULTS"
WORKDIR=$(cd "$WORKDIR" && pwd -P)
x_snapshot_kvfs
CODEC_BENCH="$(dirname "$KVFS")/kvfs-bench-codec"
bench_results_dir
LOGDIR="$WORKDIR/logs"
mkdir -p "$LOGDIR"
x_describe "lz4 $(lz4 --version 2>&1 | sed -n 's/.* v\([0-9.]*\),.*/\1/p'), zstd $(zstd --version | sed -n 's/.* v\([0-9.]*\),.*/\1/p')"
tsv_init "$RESULTS/bench_codec_cli.tsv"
T_START=$(now_ns)

# ---------------------------------------------------------------- data ----
# Sets: f16 and bf16 = the per-layer files; f16cat = per data set, all K
# (then all V) layers concatenated in layer order, as ratios_f16.md does.
declare -A SETFILES=()
x_kv_files f16 || die "no KV tensors found"
SETFILES[f16]="${KV_FILES[*]}"
DATA_ROOT=$KV_ROOT
x_kv_files bf16 && SETFILES[bf16]="${KV_FILES[*]}"
RATIOS_MD="$DATA_ROOT/../ratios_f16.md"
CAT="$WORKDIR/f16cat"
rm -rf "$CAT"; mkdir -p "$CAT"
for d in "$DATA_ROOT"/*/; do
    ds=$(basename "$d")
    for t in k v; do
        ls "$d"layer*."$t".f16 >/dev/null 2>&1 || continue
        # layer order: layer0..layerN (numeric)
        # shellcheck disable=SC2046
        cat $(ls "$d"layer*."$t".f16 | sort -V) > "$CAT/$ds.$(echo "$t" | tr kv KV).f16"
    done
done
SETFILES[f16cat]=$(ls "$CAT"/*.f16 | tr '\n' ' ')
SETS=(f16 bf16 f16cat)
[ -n "${SETFILES[bf16]:-}" ] || SETS=(f16 f16cat)
declare -A SETDESC=(
    [f16]="fp16 per-layer files"
    [bf16]="bf16 per-layer files"
    [f16cat]="fp16, all layers of K (of V) of a data set concatenated"
)
set_bytes() { cat ${SETFILES[$1]} | wc -c; }      # word splitting wanted

# ------------------------------------------------------ kvfs-bench-codec ----
VARIANTS=(lz4 lz4+shuffle2 lz4+auto zstd:1 zstd:1+shuffle2 zstd:1+auto zstd:3 zstd:3+shuffle2)
# kvfs_bench SET RUN [SECTION]: run kvfs-bench-codec on the set's files (each
# file chunked alone, 1 MiB chunks as kvfs's default) and record every variant
kvfs_bench() {             # kvfs_bench SET RUN [SECTION [RATIO-METRIC]]
    local set=$1 r=$2 sec=${3:-$1} pre=${4:-} out
    # shellcheck disable=SC2086
    out=$("$CODEC_BENCH" ${SETFILES[$set]} 2>>"$LOGDIR/bench-codec.log") || { log "kvfs-bench-codec failed on $set"; return 1; }
    echo "$out" >> "$LOGDIR/bench-codec-$set.out"
    while IFS='|' read -r _ v ratio c d _; do
        v=$(echo "$v" | tr -d ' '); ratio=$(echo "$ratio" | tr -d ' ')
        [[ "$ratio" =~ ^[0-9.]+$ ]] || continue
        tsv_add "$sec" "${pre:-ratio}" "kvfs:$v" 1 "$r" "$ratio" x
        [ -n "$pre" ] && continue       # per-tensor runs: ratios only
        tsv_add "$sec" compress "kvfs:$v" 1 "$r" "$(echo "$c" | tr -d ' ')" MB/s
        tsv_add "$sec" decompress "kvfs:$v" 1 "$r" "$(echo "$d" | tr -d ' ')" MB/s
    done <<< "$out"
}

# ------------------------------------------------------------------ CLI ----
# Per tool: compress every file on its own (once, untimed) to get the ratio
# (total in / total out, frame headers included, as ratios_f16.md) and the
# inputs of the decompression timing.  Per run, four timed processes, all
# reading from the page cache and writing to /dev/null (single-threaded:
# lz4 has no threads, zstd gets --single-thread):
#   files:  one process compresses the set's files, listed over and over up
#           to CLI_MIB MiB; one decompresses their compressed copies likewise
#   stream: one process compresses one file of CLI_MIB MiB (the set's files
#           concatenated over and over); one decompresses its output
# MB/s = uncompressed bytes / CPU time (user + sys) of the process, the
# per-core figure on this shared machine; the *_wall metrics use wall time.
declare -A CLI_C=([lz4-1]="lz4 -1 -q -m -c" [zstd-3]="zstd -3 -q --single-thread -c")
declare -A CLI_D=([lz4-1]="lz4 -d -q -m -c" [zstd-3]="zstd -d -q -c")
declare -A CLI_EXT=([lz4-1]=lz4 [zstd-3]=zst)
TOOLS=(lz4-1 zstd-3)
declare -A CLI_RATIO=() CLI_LIST=() CLI_CLIST=() CLI_BYTES=() STREAM_BYTES=()
cli_prepare() {         # cli_prepare SET TOOL: compressed copies, ratio, the argument lists
    local set=$1 tool=$2 dir="$WORKDIR/cli/$1/$2" f in=0 out=0 reps i k=0 z
    local stream="$WORKDIR/cli/$1.stream"
    local -a cmd
    rm -rf "$dir"; mkdir -p "$dir"
    read -r -a cmd <<< "${CLI_C[$tool]}"
    for f in ${SETFILES[$set]}; do
        k=$((k + 1))
        z="$dir/$(printf %03d "$k")-$(basename "$f").${CLI_EXT[$tool]}"      # names repeat across data sets
        "${cmd[@]}" "$f" > "$z" || die "$tool failed on $f"
        in=$((in + $(stat -c %s "$f")))
        out=$((out + $(stat -c %s "$z")))
    done
    [ "$(find "$dir" -type f | wc -l)" = "$k" ] || die "cli_prepare: expected $k compressed files in $dir"
    CLI_RATIO[$set.$tool]=$(awk -v a="$in" -v b="$out" 'BEGIN { printf "%.3f", a / b }')
    reps=$(( (CLI_MIB * 1048576 + in - 1) / in ))
    CLI_LIST[$set.$tool]=""; CLI_CLIST[$set.$tool]=""
    for ((i = 0; i < reps; i++)); do
        CLI_LIST[$set.$tool]+="${SETFILES[$set]} "
        CLI_CLIST[$set.$tool]+="$(ls "$dir"/* | tr '\n' ' ') "
    done
    CLI_BYTES[$set.$tool]=$((in * reps))
    if [ ! -f "$stream" ]; then
        # shellcheck disable=SC2086
        for ((i = 0; i < reps; i++)); do cat ${SETFILES[$set]}; done > "$stream"
    fi
    STREAM_BYTES[$set]=$(stat -c %s "$stream")
    "${cmd[@]}" "$stream" > "$stream.${CLI_EXT[$tool]}" || die "$tool failed on $stream"
}
# cli_time CMD...: run CMD with stdout to /dev/null; sets T_WALL, T_CPU
# (user + sys) in seconds; returns CMD's status
cli_time() {
    local tf="$WORKDIR/time.out" rc TIMEFORMAT='%3R %3U %3S' u s
    { time "$@" > /dev/null 2>>"$LOGDIR/cli.log"; } 2> "$tf"
    rc=$?
    read -r T_WALL u s < "$tf"
    T_CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }')
    return "$rc"
}
cli_mbps() { awk -v b="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.0f", b / t / 1e6 }'; }
cli_run() {             # cli_run SET TOOL RUN
    local set=$1 tool=$2 r=$3 stream="$WORKDIR/cli/$1.stream" m bytes bc bd
    local -a c d
    read -r -a c <<< "${CLI_C[$tool]}"
    read -r -a d <<< "${CLI_D[$tool]}"
    # shellcheck disable=SC2086
    cat ${CLI_LIST[$set.$tool]} ${CLI_CLIST[$set.$tool]} "$stream" "$stream.${CLI_EXT[$tool]}" > /dev/null   # page cache
    for m in compress decompress compress_stream decompress_stream; do
        # shellcheck disable=SC2086
        case "$m" in
            compress)          bytes=${CLI_BYTES[$set.$tool]}; cli_time "${c[@]}" ${CLI_LIST[$set.$tool]} ;;
            decompress)        bytes=${CLI_BYTES[$set.$tool]}; cli_time "${d[@]}" ${CLI_CLIST[$set.$tool]} ;;
            compress_stream)   bytes=${STREAM_BYTES[$set]}; cli_time "${c[@]}" "$stream" ;;
            decompress_stream) bytes=${STREAM_BYTES[$set]}; cli_time "${d[@]}" "$stream.${CLI_EXT[$tool]}" ;;
        esac || { log "$tool $m failed (rc=$?); see $LOGDIR/cli.log"; continue; }
        tsv_add "$set" "$m" "cli:$tool" 1 "$r" "$(cli_mbps "$bytes" "$T_CPU")" MB/s
        tsv_add "$set" "${m}_wall" "cli:$tool" 1 "$r" "$(cli_mbps "$bytes" "$T_WALL")" MB/s
    done
    # The tool's own in-memory benchmark mode on the stream file (its library's
    # speed, timed by the tool, no I/O): lz4 -b1 / zstd -b3, 3 s each way.
    local -a bm
    case "$tool" in
        lz4-1)  bm=(lz4 -b1 -i3) ;;
        zstd-3) bm=(zstd -b3 -i3 -q --single-thread) ;;
    esac
    read -r -d '' bc bd < <("${bm[@]}" "$stream" 2>&1 | tr '\r' '\n' | grep 'MB/s' | tail -n 1 |
                           grep -o '[0-9.]\+ MB/s' | tail -n 2 | awk '{ printf "%.0f ", $1 }')
    tsv_add "$set" compress_bench "cli:$tool" 1 "$r" "${bc:-}" MB/s
    tsv_add "$set" decompress_bench "cli:$tool" 1 "$r" "${bd:-}" MB/s
    tsv_add "$set" ratio "cli:$tool" 1 "$r" "${CLI_RATIO[$set.$tool]}" x
    tsv_add "$set" ratio_stream "cli:$tool" 1 "$r" \
        "$(awk -v a="${STREAM_BYTES[$set]}" -v b="$(stat -c %s "$stream.${CLI_EXT[$tool]}")" 'BEGIN { printf "%.3f", a / b }')" x
}

# ----------------------------------------------------------------- main ----
log "kvfs-bench-codec: $CODEC_BENCH; machine: $MACHINE; load $LOAD0"
: > "$LOGDIR/bench-codec.log"
rm -rf "$WORKDIR/cli"
for set in "${SETS[@]}"; do
    rm -f "$LOGDIR/bench-codec-$set.out"
    for tool in "${TOOLS[@]}"; do cli_prepare "$set" "$tool"; done
done
for ((r = 1; r <= RUNS; r++)); do
    for set in "${SETS[@]}"; do
        log "run $r: $set: kvfs-bench-codec, then the CLIs ($CLI_MIB MiB per timed process)"
        kvfs_bench "$set" "$r"
        for tool in "${TOOLS[@]}"; do cli_run "$set" "$tool" "$r"; done
    done
done

# Per tensor (ratios only; they do not change between runs): kvfs on each
# concatenated file, the CLI zstd -3 on it (to check that the file is the
# one ratios_f16.md measured), and the byte-split zstd -3 figure of
# ratios_f16.md.
declare -A TGT_BS=() TGT_Z3=()
if [ -f "$RATIOS_MD" ]; then
    while IFS='|' read -r _ ds t _ _ _ z3 _ bs _; do
        ds=$(echo "$ds" | tr -d ' '); t=$(echo "$t" | tr -d ' ')
        [[ "$t" =~ ^[KV]$ ]] || continue
        TGT_BS[$ds.$t]=$(echo "$bs" | tr -d ' '); TGT_Z3[$ds.$t]=$(echo "$z3" | tr -d ' ')
    done < "$RATIOS_MD"
fi
TENSORS=()
for f in "$CAT"/*.f16; do
    key=$(basename "$f" .f16)          # dataset.K
    TENSORS+=("$key")
    log "tensor $key: kvfs-bench-codec (ratios)"
    SETFILES[t_$key]=$f
    kvfs_bench "t_$key" 1 tensor_ratio "$key"
    tsv_add tensor_ratio "$key" "cli:zstd-3" 1 1 "$(awk -v a="$(stat -c %s "$f")" -v b="$(zstd -3 -q -c "$f" | wc -c)" 'BEGIN { printf "%.3f", a / b }')" x
    [ -n "${TGT_BS[$key]:-}" ] && tsv_add tensor_ratio "$key" "ratios_f16.md:byte-split-zstd-3" 1 1 "${TGT_BS[$key]}" x
    [ -n "${TGT_Z3[$key]:-}" ] && tsv_add tensor_ratio "$key" "ratios_f16.md:zstd-3" 1 1 "${TGT_Z3[$key]}" x
done
T_END=$(now_ns)

# --------------------------------------------------------------- report ----
tsv_stats
MD="$RESULTS/bench_codec_cli.md"
r3() { [ -n "$1" ] && printf '%.3f' "$1"; }
{
    echo "## Codecs: kvfs vs the lz4 and zstd command-line tools (bench_codec_cli.sh)"
    echo
    x_header_lines
    echo
    echo "$RUNS runs; median (min–max); ratios are deterministic. Total wall time $(( (T_END - T_START) / 1000000000 )) s$([ "$QUICK" = 1 ] && echo "; **--quick sizes**")."
    echo
    echo "Data: the real KV tensors of \`$DATA_ROOT\` (see its README): *f16* = $(echo "${SETFILES[f16]}" | wc -w) fp16 per-layer files (32 or 128 KiB), $(set_bytes f16) bytes; *bf16* = $(echo "${SETFILES[bf16]:-}" | wc -w) bf16 files, $( [ -n "${SETFILES[bf16]:-}" ] && set_bytes bf16 || echo 0) bytes; *f16cat* = the same fp16 data as $(echo "${SETFILES[f16cat]}" | wc -w) files, all layers of K (of V) of each data set concatenated in layer order (160 or 640 KiB), as ratios_f16.md measures them."
    echo
    echo "- **kvfs**: \`$CODEC_BENCH\` (tests/bench/bench_codec.c): kvfs's codec module, each file cut into 1 MiB chunks of its own as the store does, one thread, each variant repeated until 0.3 s of compression is timed; MB/s of uncompressed data (10^6 B/s) per wall time of the codec calls. \`+shuffle2\` = byte shuffle of 2-byte elements; \`+auto\` = \`-o shuffle=auto\` (as the store does: the first chunk of each file and every 16th choose, lz4 on a 64 KiB sample compressed plain and shuffled, zstd on the whole chunk compressed both ways; the chunks between reuse the choice); \`lz4+auto\` is kvfs's default, \`zstd:1+auto\` is \`-o codec=zstd\`. A chunk that does not shrink by 1/32 is stored raw."
    echo "- **CLI**: \`lz4 -1\` and \`zstd -3 --single-thread\` (decompression \`-d\`), everything from the page cache to /dev/null. Ratio = total in / total out of each file compressed on its own (frame headers included, as ratios_f16.md). *files*: one process compresses the set's files, listed over and over up to $CLI_MIB MiB, and one decompresses their compressed copies likewise; *stream*: one process per direction on one $CLI_MIB MiB file of the set concatenated over and over (no per-file overhead). In italics, *-b*: the tool's own in-memory benchmark mode on the stream file (\`lz4 -b1 -i3\`, \`zstd -b3 -i3 --single-thread\`, wall time as the tool reports it): the codec library's speed without the CLI's I/O, for reference. MB/s = uncompressed bytes / CPU time (user + sys) of the process, the per-core figure on this shared machine (wall-time figures are in the TSV as \`*_wall\`)."
    echo "- *vs CLI*: kvfs median / the CLI's median, lz4 variants against \`lz4 -1\`, zstd variants against \`zstd -3\`; speeds against the *files* figure and, after the semicolon, the *stream* figure."
    for set in "${SETS[@]}"; do
        echo
        echo "**$set** (${SETDESC[$set]}, $(set_bytes "$set") bytes):"
        echo
        echo "| codec | ratio | compress MB/s | decompress MB/s | ratio vs CLI | compress vs CLI (files; stream) | decompress vs CLI (files; stream) |"
        echo "|---|---|---|---|---|---|---|"
        for tool in "${TOOLS[@]}"; do
            echo "| CLI \`${CLI_C[$tool]%% -q*}\` | $(cell "$set" ratio "cli:$tool" %.3f) (stream $(cell "$set" ratio_stream "cli:$tool" %.3f)) | files $(cell "$set" compress "cli:$tool"); stream $(cell "$set" compress_stream "cli:$tool"); *-b: $(cell "$set" compress_bench "cli:$tool")* | files $(cell "$set" decompress "cli:$tool"); stream $(cell "$set" decompress_stream "cli:$tool"); *-b: $(cell "$set" decompress_bench "cli:$tool")* | (baseline) | | |"
        done
        for v in "${VARIANTS[@]}"; do
            case "$v" in lz4*) tool=lz4-1 ;; *) tool=zstd-3 ;; esac
            rr=$(x_ratio "$(med "$set" ratio "kvfs:$v")" "$(med "$set" ratio "cli:$tool")")
            rc=$(x_ratio "$(med "$set" compress "kvfs:$v")" "$(med "$set" compress "cli:$tool")")
            rcs=$(x_ratio "$(med "$set" compress "kvfs:$v")" "$(med "$set" compress_stream "cli:$tool")")
            rd=$(x_ratio "$(med "$set" decompress "kvfs:$v")" "$(med "$set" decompress "cli:$tool")")
            rds=$(x_ratio "$(med "$set" decompress "kvfs:$v")" "$(med "$set" decompress_stream "cli:$tool")")
            echo "| kvfs \`$v\` | $(cell "$set" ratio "kvfs:$v" %.3f) | $(cell "$set" compress "kvfs:$v") | $(cell "$set" decompress "kvfs:$v") | ${rr:+${rr}x} | ${rc:+${rc}x}; ${rcs:+${rcs}x} | ${rd:+${rd}x}; ${rds:+${rds}x} |"
        done
    done
    echo
    echo "**Target 1: lossless ratio ≥ the byte-split + zstd -3 figures of ratios_f16.md**, per tensor (all layers of K or V of a data set, fp16, one kvfs chunk each; kvfs-bench-codec on each concatenated file). The CLI zstd -3 column checks that the files are those ratios_f16.md measured (its figure in brackets)."
    echo
    echo "| tensor | bytes | target: byte-split zstd -3 | CLI zstd -3 here (ratios_f16.md) | kvfs zstd:1+auto (\`-o codec=zstd\`) | kvfs zstd:1+shuffle2 | kvfs zstd:3+shuffle2 | kvfs lz4+auto (default) | best kvfs variant | best / target | result |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    nmet=0; nall=0
    for key in "${TENSORS[@]}"; do
        s=tensor_ratio
        tg=${TGT_BS[$key]:-}
        best=""; bestv=""
        for v in "${VARIANTS[@]}"; do
            x=$(med "$s" "$key" "kvfs:$v")
            [ -n "$x" ] || continue
            if [ -z "$best" ] || awk -v a="$x" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$x; bestv=$v; fi
        done
        rt=$(x_ratio "$best" "$tg" %.3f)
        if [ -z "$rt" ]; then res="no target"
        else
            nall=$((nall + 1))
            if x_ge "$best" "$tg"; then res=met; nmet=$((nmet + 1)); else res="MISSED ($(awk -v a="$best" -v b="$tg" 'BEGIN { printf "%+.1f %%", (a / b - 1) * 100 }'))"; fi
        fi
        echo "| ${key/./ } | $(stat -c %s "$CAT/$key.f16") | ${tg:-–} | $(r3 "$(med "$s" "$key" cli:zstd-3)") (${TGT_Z3[$key]:-–}) | $(r3 "$(med "$s" "$key" kvfs:zstd:1+auto)") | $(r3 "$(med "$s" "$key" kvfs:zstd:1+shuffle2)") | $(r3 "$(med "$s" "$key" kvfs:zstd:3+shuffle2)") | $(r3 "$(med "$s" "$key" kvfs:lz4+auto)") | $(r3 "$best") ($bestv) | ${rt:+${rt}x} | $res |"
    done
    # the whole f16cat set against the byte-split figures, weighted by bytes
    tgt_all=$(for key in "${TENSORS[@]}"; do [ -n "${TGT_BS[$key]:-}" ] && echo "$(stat -c %s "$CAT/$key.f16") ${TGT_BS[$key]}"; done |
              awk '{ a += $1; b += $1 / $2 } END { if (b) printf "%.3f", a / b }')
    echo
    echo "All $nall tensors together (bytes in / bytes out): target ${tgt_all:-–}; kvfs \`zstd:1+auto\` $(r3 "$(med f16cat ratio kvfs:zstd:1+auto)") ($(x_ratio "$(med f16cat ratio kvfs:zstd:1+auto)" "$tgt_all" %.3f)x), \`zstd:1+shuffle2\` $(r3 "$(med f16cat ratio kvfs:zstd:1+shuffle2)") ($(x_ratio "$(med f16cat ratio kvfs:zstd:1+shuffle2)" "$tgt_all" %.3f)x), \`zstd:3+shuffle2\` $(r3 "$(med f16cat ratio kvfs:zstd:3+shuffle2)") ($(x_ratio "$(med f16cat ratio kvfs:zstd:3+shuffle2)" "$tgt_all" %.3f)x), \`lz4+auto\` $(r3 "$(med f16cat ratio kvfs:lz4+auto)"). Best variant ≥ target on $nmet of $nall tensors."
    echo
    echo "**Target 2: lz4-path decode ≥ $LZ4_DEC_TARGET MB/s per core** (kvfs-bench-codec decompress, one thread). With ratio ≈ 1 (fp16 under lz4) most chunks are stored raw and their decode is a copy; the bf16 set, where lz4 + shuffle compresses, is the real test of the lz4 path."
    echo
    echo "| set | kvfs lz4 | kvfs lz4+shuffle2 | kvfs lz4+auto (default) | ratio of lz4+auto | CLI lz4 -d (files; stream) | result (worst of the three kvfs lz4 variants) |"
    echo "|---|---|---|---|---|---|---|"
    for set in "${SETS[@]}"; do
        m=""
        for v in lz4 lz4+shuffle2 lz4+auto; do
            x=$(med "$set" decompress "kvfs:$v")
            [ -n "$x" ] && { [ -z "$m" ] || x_ge "$m" "$x"; } && m=$x
        done
        if [ -z "$m" ]; then res="no data"; elif x_ge "$m" "$LZ4_DEC_TARGET"; then res="met ($(x_ratio "$m" "$LZ4_DEC_TARGET")x)"; else res="MISSED ($(x_ratio "$m" "$LZ4_DEC_TARGET")x)"; fi
        echo "| $set | $(cell "$set" decompress kvfs:lz4) | $(cell "$set" decompress kvfs:lz4+shuffle2) | $(cell "$set" decompress kvfs:lz4+auto) | $(r3 "$(med "$set" ratio kvfs:lz4+auto)") | $(cell "$set" decompress cli:lz4-1); $(cell "$set" decompress_stream cli:lz4-1) | $res |"
    done
} > "$MD.tmp"
mv "$MD.tmp" "$MD"
cat "$MD"
log "results: $RESULTS/bench_codec_cli.tsv, $MD; logs in $LOGDIR"
