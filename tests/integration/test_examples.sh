#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The engine-side example stores a real KV context by publish-by-rename,
# lists it with its compression ratio and loads it back byte for byte.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ex=$KV_REPO/examples/kv_context.py
kv_mount "$T/store" "$T/mnt" codec=zstd
python3 "$ex" save "$T/mnt" llama ctx-a "$KV_DATA"/gpl3/* >/dev/null
check '[ -d "$T/mnt/llama/ctx-a" ]' "context not published"
check '[ -z "$(find "$T/mnt/llama" -name ".tmp-*")" ]' "temporary directory left behind"
assert_eq "$(getfattr --absolute-names --only-values -n user.kv.layers "$T/mnt/llama/ctx-a")" \
    "$(find "$KV_DATA/gpl3" -type f | wc -l)" "layer count xattr"
line=$(python3 "$ex" ls "$T/mnt" llama)
ratio=$(cut -f4 <<<"$line" | tr -d x)
check 'awk -v r="$ratio" "BEGIN { exit !(r > 1.1) }"' "zstd ratio on real KV is only $ratio"
python3 "$ex" load "$T/mnt" llama ctx-a "$T/out" >/dev/null
for f in "$KV_DATA"/gpl3/*; do
    cmp "$f" "$T/out/$(basename "$f")" || fail "loaded $(basename "$f") differs"
done
check '! python3 "$ex" load "$T/mnt" llama missing "$T/out2" 2>/dev/null' "loading a missing context succeeded"
pass "example save/ls/load"
