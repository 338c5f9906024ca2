#!/usr/bin/env bash
# Installs what is missing, builds kvfs twice (optimised, and with
# AddressSanitizer + UndefinedBehaviorSanitizer) and runs every test in both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)
for cfg in release asan; do
	dir=build-ci-$cfg
	opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVFS_WERROR=ON)
	[ "$cfg" = asan ] && opts=(-DCMAKE_BUILD_TYPE=Debug -DKVFS_SANITIZE=ON -DKVFS_WERROR=ON)
	echo "== $cfg build"
	cmake -S . -B "$dir" "${opts[@]}" >/dev/null
	cmake --build "$dir" -j "$jobs"
	echo "== $cfg tests"
	(cd "$dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j 1)
done
