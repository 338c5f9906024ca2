#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The manual page packaging/kvfs.1 is kvfs --man, which prints it from the
# option table that --help and the README table come from (regenerate it
# with `kvfs --man >packaging/kvfs.1`), and groff reads it without warnings.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

"$KVFS" --man >"$T/kvfs.1"
diff "$KV_REPO/packaging/kvfs.1" "$T/kvfs.1" >&2 ||
    fail "packaging/kvfs.1 differs from kvfs --man (< file, > generated): regenerate it"
for name in $("$KVFS" --options-markdown | awk -F'`' 'NR > 2 { print $2 }'); do
    grep -q "^\.B \\\\-o $name=" "$T/kvfs.1" || fail "kvfs --man lacks -o $name"
done
if command -v groff >/dev/null; then
    warn=$(groff -man -ww -z "$T/kvfs.1" 2>&1)
    assert_eq "$warn" "" "groff warnings for kvfs.1"
fi
pass "packaging/kvfs.1 is kvfs --man, with every option, and clean troff"
