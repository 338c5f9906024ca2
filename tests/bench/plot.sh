#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# plot.sh - bar charts (gnuplot, PNG) of benchmark results.
#
# Usage: bash tests/bench/plot.sh RESULTS_DIR OUT_DIR
#
# Reads every RESULTS_DIR/*.tsv with the columns
#   section metric target jobs run value unit
# (tab-separated; a header line and rows whose value is not a number are
# skipped) and draws OUT_DIR/<section>.png for every section found: bars
# grouped by metric and jobs, one bar per target, the median over the runs
# with min-max error bars; one panel per unit when a section mixes units,
# and groups that hold few of the targets get panels of their own.
# fio.tsv is read first, then the others in name order; sections, targets
# and groups keep the order in which they first appear; a section name found
# in several files gives one chart per file, <file>-<section>.png.  Prints the
# PNG paths it wrote, one per line, and writes OUT_DIR/index.tsv (png, tsv
# file, section).  Needs gnuplot (gnuplot-nox) and python3.

set -u -o pipefail
export LC_ALL=C

usage() { sed -n '3,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && usage 0
[ $# -eq 2 ] || usage 2
RESULTS=$1
OUT=$2
[ -d "$RESULTS" ] || { echo "plot.sh: $RESULTS: no such directory" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "plot.sh: python3 not found" >&2; exit 1; }
mkdir -p "$OUT" || exit 1

TERM_NAME=pngcairo
gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo || TERM_NAME=png
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

files=()
[ -f "$RESULTS/fio.tsv" ] && files+=("$RESULTS/fio.tsv")
for f in "$RESULTS"/*.tsv; do
    [ -f "$f" ] && [ "$(basename "$f")" != fio.tsv ] && files+=("$f")
done
[ ${#files[@]} -gt 0 ] || { echo "plot.sh: no .tsv files in $RESULTS" >&2; exit 1; }

# python3 groups the rows and writes, per section, a data file and a gnuplot
# script into TMP, and prints "SCRIPT PNG" lines.
python3 - "$TMP" "$OUT" "$TERM_NAME" "${files[@]}" > "$TMP/list" <<'PY' || exit 1
import math, os, re, statistics, sys

tmp, out, term, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
TITLES = {
    "seq_write": "Sequential write, 1 MiB requests, with fsync",
    "cold_read": "Cold sequential read, 1 MiB requests",
    "warm_read": "Warm sequential read, 1 MiB requests",
    "rand_4k": "Random 4 KiB reads",
    "rand_64k": "Random 64 KiB reads",
}

def num(s):
    try:
        v = float(s)
        return v if math.isfinite(v) else None
    except ValueError:
        return None

def uniq_append(lst, x):
    if x not in lst:
        lst.append(x)

sections = []
data = {}          # (file, section) -> unit -> {"groups": [], "targets": [], "vals": {(g, t): []}}
for path in files:
    with open(path, errors="replace") as fh:
        for line in fh:
            x = line.rstrip("\n").split("\t")
            if len(x) < 7 or x[0] == "section":
                continue
            sec, metric, target, jobs, run, value, unit = (c.strip() for c in x[:7])
            v = num(value)
            if v is None or not sec:
                continue
            key = (os.path.basename(path), sec)
            uniq_append(sections, key)
            panel = data.setdefault(key, {}).setdefault(unit, {"groups": [], "targets": [], "vals": {}, "metrics": [], "jobs": []})
            uniq_append(panel["metrics"], metric)
            uniq_append(panel["jobs"], jobs)
            uniq_append(panel["groups"], (metric, jobs))
            uniq_append(panel["targets"], target)
            panel["vals"].setdefault(((metric, jobs), target), []).append(v)

def fmt(v):
    a = abs(v)
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"

def gq(s):          # a gnuplot double-quoted string
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

def group_label(panel, g):
    metric, jobs = g
    parts = []
    if len(panel["metrics"]) > 1 or len(panel["jobs"]) == 1:
        parts.append(metric)
    if len(panel["jobs"]) > 1:
        parts.append(f"{jobs} job" + ("" if jobs == "1" else "s") if re.fullmatch(r"\d+", jobs) else jobs)
    return ", ".join(parts) or metric

def split_panel(p):
    """Groups that hold fewer than half of the panel's targets go to panels of
    their own (one per set of targets), so that sparse groups do not draw
    rows of empty slots."""
    full = p["targets"]
    sets = {}
    for g in p["groups"]:
        have = tuple(t for t in full if (g, t) in p["vals"])
        k = tuple(full) if 2 * len(have) >= len(full) else have
        sets.setdefault(k, []).append(g)
    out = []
    for ts, gs in sets.items():
        out.append({"targets": list(ts), "groups": gs, "vals": p["vals"],
                    "metrics": list(dict.fromkeys(g[0] for g in gs)),
                    "jobs": list(dict.fromkeys(g[1] for g in gs))})
    return out

PALETTE = ["#9400d3", "#009e73", "#56b4e9", "#e69f00", "#f0e442", "#0072b2", "#e51e10", "#222222",
           "#cc79a7", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f", "#ff9896", "#98df8a", "#c5b0d5"]

index = open(os.path.join(out, "index.tsv"), "w")
for si, key in enumerate(sections):
    fname, sec = key
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", sec)
    if sum(1 for k in sections if k[1] == sec) > 1:     # the section is in several files
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(fname)[0]) + "-" + name
    index.write(f"{name}.png\t{fname}\t{sec}\n")
    png = os.path.join(out, name + ".png")
    panels = [(u, sp) for u, p in data[key].items() for sp in split_panel(p)]
    alltargets = list(dict.fromkeys(t for _, p in panels for t in p["targets"]))
    ntarg = max(len(p["targets"]) for _, p in panels)
    ngroups = max(len(p["groups"]) for _, p in panels)
    maxlab = max(len(group_label(p, g)) for _, p in panels for g in p["groups"])
    per_group = max((ntarg + 1) * 34, maxlab * 7 + 16)
    width = max(900, min(2400, 160 + ngroups * per_group + 260))
    rotate = ngroups * max((ntarg + 1) * 34, maxlab * 7 + 16) > width - 420
    height = 480 * len(panels)
    gp = [f"set terminal {term} size {width},{height} font 'sans,10'" if term == "pngcairo"
          else f"set terminal png size {width},{height}",
          f"set output {gq(png)}",
          "set encoding utf8", "set termoption noenhanced",
          "set style data histograms",
          "set style histogram errorbars gap 1 lw 1",
          "set style fill solid 0.85 border -1",
          "set boxwidth 0.9 relative",
          "set grid ytics lc rgb '#dddddd'",
          "set key outside right top vertical Left reverse noenhanced",
          "set xtics nomirror scale 0", "set ytics nomirror", "set border 3",
          "set datafile missing 'NaN'", f"set bmargin {7 if rotate else 4}"]
    if len(panels) > 1:
        gp.append(f"set multiplot layout {len(panels)},1")
    nruns = 0
    nunits = len(data[key])
    for ui, (unit, p) in enumerate(panels):
        T, G = p["targets"], p["groups"]
        dat = os.path.join(tmp, f"{name}-{ui}.dat")
        meds, highs = [], []
        with open(dat, "w") as fh:
            for g in G:
                row = [gq(group_label(p, g))]
                for t in T:
                    v = p["vals"].get((g, t), [])
                    nruns = max(nruns, len(v))
                    if v:
                        m = statistics.median(v)
                        meds.append(m); highs.append(max(v))
                        row += [repr(m), repr(min(v)), repr(max(v)), gq(fmt(m))]
                    else:
                        row += ["NaN", "NaN", "NaN", '""']
                fh.write(" ".join(row) + "\n")
        title = TITLES.get(sec, sec) if fname == "fio.tsv" else f"{sec} ({os.path.splitext(fname)[0]})"
        gp.append(f"set title {gq(title + (' — ' + unit if nunits > 1 else ''))}")
        gp.append(f"set ylabel {gq(unit)}")
        gp.append(f"set xrange [-0.6:{len(G) - 0.4!r}]")
        gp.append("set xtics rotate by -25" if rotate else "set xtics norotate")
        pos = [m for m in meds if m > 0]
        if pos and max(pos) / min(pos) > 1000:
            gp += ["set logscale y", f"set yrange [{min(pos) / 2!r}:{max(highs) * 4!r}]"]
        else:
            gp += ["unset logscale y", f"set yrange [0:{(max(highs) if highs else 1) * 1.2!r}]"]
        n = len(T)
        gp.append(f"array TN[{n}] = [" + ", ".join(gq(t) for t in T) + "]")
        # bars and value labels: histogram bar i (0-based) of cluster g sits
        # at x = g + (i - (n - 1) / 2) / (n + gap), gap = 1
        plots = []
        for i in range(n):
            c = 2 + 4 * i
            color = PALETTE[alltargets.index(T[i]) % len(PALETTE)]
            plots.append(f"'{dat}' using {c}:{c + 1}:{c + 2}:xtic(1) title TN[{i + 1}] lc rgb '{color}'")
        for i in range(n):
            c = 2 + 4 * i
            off = (i - (n - 1) / 2) / (n + 1)
            plots.append(f"'{dat}' using ($0 + {off!r}):(column({c + 2})):(stringcolumn({c + 3})) "
                         "with labels rotate by 90 left offset 0,0.6 font ',8' notitle")
        gp.append("plot " + ", \\\n     ".join(plots))
    if len(panels) > 1:
        gp.append("unset multiplot")
    # the figure's footnote: where the data came from
    gp.insert(2, f"set label 999 {gq('median of up to ' + str(nruns) + ' run(s), bars: min–max; from ' + fname)} at screen 0.01,0.012 font ',8'")
    script = os.path.join(tmp, f"{name}.gp")
    with open(script, "w") as fh:
        fh.write("\n".join(gp) + "\n")
    print(script, png)
PY

rc=0
while read -r script png; do
    if gnuplot "$script" 2> "$TMP/err"; then
        echo "$png"
    else
        echo "plot.sh: gnuplot failed for $png:" >&2
        sed 's/^/    | /' "$TMP/err" >&2
        rc=1
    fi
done < "$TMP/list"
exit "$rc"
