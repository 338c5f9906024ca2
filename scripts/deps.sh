#!/usr/bin/env bash
# Installs kvfs's build and test dependencies on Debian/Ubuntu (as root).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libfuse3-dev fuse3 libsqlite3-dev sqlite3
      liblz4-dev libzstd-dev libxxhash-dev check attr rsync python3 kmod
      hipcc libamdhip64-dev)  # the HIP GPU plugin; CUDA's nvcc comes from NVIDIA
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ -e /dev/fuse ] || modprobe fuse
