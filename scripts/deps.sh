#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs kvfs's build and test dependencies on Debian/Ubuntu (as root).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libfuse3-dev fuse3 libsqlite3-dev sqlite3
      liblz4-dev libzstd-dev libxxhash-dev check attr rsync python3 kmod
      python3-venv python3-pip python3-setuptools python3-numpy  # the Python package's test
      fio gnuplot-nox)     # the benchmarks (tests/bench/run_all.sh) and their charts
# Where the distribution has them (Debian 12 does): the HIP GPU plugin's
# compiler and runtime (CUDA's nvcc comes from NVIDIA, not from here), and
# clang with libFuzzer for the fuzz targets, clang-format for the style check.
optional=(hipcc libamdhip64-dev clang-14 libfuzzer-14-dev clang-format)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
missing=()
for p in "${pkgs[@]}" "${optional[@]}"; do
	installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	want=()
	for p in "${missing[@]}"; do
		if [[ " ${optional[*]} " == *" $p "* ]] && ! apt-cache show "$p" >/dev/null 2>&1; then
			echo "not available here, skipped: $p"
			continue
		fi
		want+=("$p")
	done
	if ((${#want[@]})); then
		echo "installing: ${want[*]}"
		apt-get install -y -qq --no-install-recommends "${want[@]}"
	fi
fi
[ -e /dev/fuse ] || modprobe fuse
