#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Usage: bash scripts/test.sh [--quick | --help]      (as root; HACKING.md)
# Installs what is missing, checks the C sources' formatting (.clang-format),
# then tests kvfs:
#   (no option)  the whole suite: builds kvfs optimised and with AddressSanitizer
#                + UndefinedBehaviorSanitizer and runs every test in both, runs
#                the unit tests under ThreadSanitizer, then builds the libFuzzer
#                targets with clang and runs each for a while
#   --quick      the optimised build, its unit tests and a few fast tests on a
#                mount, in a few minutes
#   --help       this text
set -euo pipefail
usage() { sed -n '3,12s/^# \{0,1\}//p' "$0"; }
quick=0
case "${1:-}" in
"") ;;
--quick) quick=1 ;;
-h | --help) usage; exit 0 ;;
*) usage >&2; exit 2 ;;
esac
[ $# -le 1 ] || { usage >&2; exit 2; }
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)
# The C sources as .clang-format has them (clang-format 14, Debian 12's:
# other versions format some constructs differently, so they skip).
if clang-format --version 2>/dev/null | grep -q 'version 14\.' && [ -d .git ]; then
	echo "== style"
	git ls-files -z 'src/*.[ch]' 'include/*.h' 'tests/*.[ch]' 'examples/*.[ch]' |
		xargs -0 clang-format --dry-run --Werror
else
	echo "== style: skipped, clang-format 14 is not installed here"
fi
# The quick tier's tests on a mount: the POSIX basics, renames, the
# operator tools, a remount, the options table and the manual page.
quick_tests='^(unit_.*|test_basic|test_rename|test_tools|test_persist|test_docs|test_man)$'
cfgs=(release asan)
((quick)) && cfgs=(release)
for cfg in "${cfgs[@]}"; do
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
	pick=()
	((quick)) && pick=(-R "$quick_tests")
	(cd "$dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j 1 "${pick[@]}")
done
((quick)) && exit 0
# The unit tests once more under ThreadSanitizer. gcc 12's fails at start
# ("unexpected memory mapping") where the kernel randomises mmap with more
# than 28 bits; without randomisation (setarch -R, where allowed) it runs.
echo "== tsan build"
cmake -S . -B build-ci-tsan -DCMAKE_BUILD_TYPE=Debug -DKVFS_SANITIZE_THREAD=ON -DKVFS_WERROR=ON >/dev/null
cmake --build build-ci-tsan -j "$jobs" --target kvfs-unit
echo "== tsan unit tests"
norand=()
setarch "$(uname -m)" -R true 2>/dev/null && norand=(setarch "$(uname -m)" -R)
(cd build-ci-tsan && TSAN_OPTIONS=second_deadlock_stack=1 CK_TIMEOUT_MULTIPLIER=4 \
	"${norand[@]}" ctest --output-on-failure -j 1 -R '^unit_')
# Each fuzzer gets 20 s on its seed corpus (tests/fuzz/README.md).
if command -v clang-14 >/dev/null; then
	echo "== fuzz build"
	cmake -S . -B build-ci-fuzz -DCMAKE_C_COMPILER=clang-14 -DKVFS_FUZZ=ON -DKVFS_WERROR=ON >/dev/null
	cmake --build build-ci-fuzz -j "$jobs" --target kvfs-fuzz
	echo "== fuzz"
	bash tests/fuzz/run.sh build-ci-fuzz 20
else
	echo "== fuzz: skipped, clang-14 and libfuzzer-14-dev are not available here"
fi
