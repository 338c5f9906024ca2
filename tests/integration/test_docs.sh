#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The options table in README.md is the one kvfs prints from its option
# table, and --help names every option.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

"$KVFS" --options-markdown >"$T/table.md"
[ "$(wc -l <"$T/table.md")" -gt 3 ] || fail "kvfs --options-markdown printed no table"
while IFS= read -r line; do
    grep -qxF -- "$line" "$KV_REPO/README.md" || fail "README.md lacks the options row: $line"
done <"$T/table.md"
"$KVFS" --help >"$T/help.txt"
for name in $(sed -n 's/^| `\([a-z_]*\)` .*/\1/p' "$T/table.md"); do
    grep -q -- "-o $name=" "$T/help.txt" || fail "--help lacks $name"
done
pass "README options table and --help match the option table"
