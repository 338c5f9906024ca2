#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs each libFuzzer target for SECONDS on a copy of its seed corpus (the
# checkout is never written) and fails when one finds a crash, a leak, a
# timeout or a broken invariant. Crashing inputs are kept in
# BUILD_DIR/fuzz/artifacts/.
#   tests/fuzz/run.sh BUILD_DIR SECONDS
set -euo pipefail
if [ $# -ne 2 ]; then
	echo "usage: $0 BUILD_DIR SECONDS" >&2
	exit 2
fi
build=$(realpath "$1")
secs=$2
here=$(cd "$(dirname "$0")" && pwd)
art=$build/fuzz/artifacts
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$art"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
# target:max_len. Records: a 64 KiB chunk stored raw, with its header;
# segments: the largest seed; ioctl: the 24-byte prefix and the struct;
# meta: an inode record payload (a file of 2000 chunks is 58 KiB).
for t in record:65600 segment:204800 ioctl:4096 meta:65536; do
	name=${t%%:*}
	bin=$build/fuzz/fuzz_$name
	log=$work/$name.log
	cp -r "$here/corpus/$name" "$work/$name"
	echo "== fuzz_$name, ${secs}s"
	if "$bin" -max_total_time="$secs" -max_len="${t#*:}" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$art/$name-" "$work/$name" >"$log" 2>&1; then
		grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec)' "$log" || true
	else
		tail -n 80 "$log"
		failed+=("fuzz_$name")
	fi
done
if ((${#failed[@]})); then
	echo "FAILED: ${failed[*]} (inputs in $art)" >&2
	exit 1
fi
