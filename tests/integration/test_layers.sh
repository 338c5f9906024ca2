#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The layering of src/ (docs/architecture.md): a file may include the
# headers of its own folder and of the layers below it, never one above.
#   base < store < fs < gpu < fuse, tools;  lib: only include/kvfs/
# No mount: the #include lines of every source file are checked.
set -euo pipefail
SRC=${KVFS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$SRC/src"
declare -A rank=([base]=0 [store]=1 [fs]=2 [gpu]=3 [fuse]=4 [tools]=4)
declare -A home
for d in base store fs gpu fuse tools lib; do
	for h in "$d"/*.h; do
		[ -e "$h" ] && home[$(basename "$h")]=$d
	done
done
bad=0 checked=0
for f in */*.c */*.h; do
	d=${f%%/*}
	while read -r inc; do
		checked=$((checked + 1))
		to=${home[$inc]:-}
		[ -n "$to" ] || continue # a system, library or include/kvfs header
		if [ "$d" = lib ] || [ "$to" = lib ]; then
			ok=$([ "$d" = "$to" ] && echo 1 || echo 0)
		elif [ "$d" = "$to" ]; then
			ok=1
		else
			ok=$((rank[$to] < rank[$d]))
			# fuse and tools share a rank but not their headers
		fi
		if [ "$ok" != 1 ]; then
			echo "FAIL: src/$f includes $inc (src/$to/): $to is not below $d" >&2
			bad=$((bad + 1))
		fi
	done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done
[ "$checked" -gt 100 ] || { echo "FAIL: only $checked #include lines found under $SRC/src" >&2; exit 1; }
[ "$bad" -eq 0 ] || { echo "FAIL: $bad includes against the layering" >&2; exit 1; }
echo "ok: $checked #include lines under src/ keep the layering"
