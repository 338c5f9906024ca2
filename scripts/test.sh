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
	# Where a GPU toolchain is installed its plugin must build, warning-free.
	{ command -v nvcc || [ -x /usr/local/cuda/bin/nvcc ]; } >/dev/null 2>&1 && opts+=(-DKVFS_GPU_CUDA=ON)
	command -v hipcc >/dev/null 2>&1 && opts+=(-DKVFS_GPU_HIP=ON)
	echo "== $cfg build"
	cmake -S . -B "$dir" "${opts[@]}" >/dev/null
	cmake --build "$dir" -j "$jobs"
	echo "== $cfg tests"
	(cd "$dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j 1)
done
