#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The GPU fast path against its baselines, on a machine with an NVIDIA GPU
# (tests/bench/README.md). One run, every figure measured here and now:
#   limit         in-process cudaMemcpy from pinned memory (the bound)
#   pread         pread() through the mount + cudaMemcpy (pageable / pinned)
#   GPU_READ hot  from the DRAM tier (ram=2G, after one pass)
#   GPU_READ cold codec none/lz4/zstd: tier too small to hold the file, the
#                 store's segments in the page cache (raw chunks copied from
#                 page-locked segment windows); codec=none with gpu_pin=0:
#                 every chunk read into a buffer first
# 1 GiB of KV-like bf16 data, requests of 64 MiB and 2 MiB (a layer).
# Usage: bench_gpu.sh BUILD_DIR [OUT_DIR]
set -euo pipefail
B=$(cd "$1" && pwd)
OUT=${2:-.}
RUNS=${RUNS:-5}
CHUNK=${CHUNK:-1M}   # the stores' chunk size
M64=$((64 << 20))
M2=$((2 << 20))
W=$(mktemp -d /tmp/kvfs-bgpu.XXXXXX)
MNT=$W/mnt
DATA=$W/kv1g.bin
trap 'mountpoint -q $MNT && fusermount3 -u $MNT; rm -rf $W' EXIT
mkdir -p $MNT

# bf16 K/V-like tensors: per-channel scales, heavy-tailed, as in real caches.
python3 - "$DATA" <<'PY'
import sys, torch
torch.manual_seed(1)
n = 1 << 29                       # 2^29 bf16 values = 1 GiB
ch = 1024
scale = torch.exp(torch.randn(ch) * 0.8) * 0.05
x = torch.randn(n // ch, ch) * scale
x[:, ::97] *= 20                  # outlier channels
x.to(torch.bfloat16).view(torch.uint8).numpy().tofile(sys.argv[1])
PY

mount_kvfs() { # STORE OPTS
	rm -rf "$1"; mkdir -p "$1"
	"$B/kvfs" -o "$2" "$1" $MNT
	mkdir -p $MNT/bench/ctx
}
umount_kvfs() { fusermount3 -u $MNT; }
med() { # MODE FILE REQ -> "GB/s us/req"
	"$B/kvfs-bench-gpu" "$1" "$2" "$3" $RUNS | awk '/^median/ {print $3, $5}'
}

declare -A R
R[limit_64M]=$(med limit $DATA $M64)
R[limit_2M]=$(med limit $DATA $M2)
R[d2h_64M]=$(med limit-d2h $DATA $M64)
R[chunks_64M]=$(med dma-chunks $DATA $M64)
R[chunks_2M]=$(med dma-chunks $DATA $M2)

for codec in none lz4 zstd; do
	mount_kvfs $W/store-$codec "codec=$codec,chunk=$CHUNK,ram=128M,gpu=cuda"
	cp $DATA $MNT/bench/ctx/data
	sync
	R[cold_${codec}_64M]=$(med ioctl $MNT/bench/ctx/data $M64)
	R[cold_${codec}_2M]=$(med ioctl $MNT/bench/ctx/data $M2)
	if [ $codec = none ]; then
		R[pread_64M]=$(med pread $MNT/bench/ctx/data $M64)
		R[pinned_64M]=$(med pread-pinned $MNT/bench/ctx/data $M64)
		R[pread_2M]=$(med pread $MNT/bench/ctx/data $M2)
		R[pinned_2M]=$(med pread-pinned $MNT/bench/ctx/data $M2)
		R[write_none_64M]=$(med ioctl-write $MNT/bench/ctx/data $M64)
	fi
	grep -E '^kvfs_(tier_(hits|misses)_total|gpu_pinned_bytes|gpu_(load|copy)_wait_seconds_total|gpu_load_seconds_total|gpu_loads_total|gpu_direct_loads_total|gpu_window_bytes)' $MNT/.kvfs/stats | sed "s/^/  [$codec cold] /"
	umount_kvfs
done

# The cold path before segment windows (every chunk read into a buffer).
mount_kvfs $W/store-buffered "codec=none,chunk=$CHUNK,ram=128M,gpu=cuda,gpu_pin=0"
cp $DATA $MNT/bench/ctx/data
sync
R[buffered_64M]=$(med ioctl $MNT/bench/ctx/data $M64)
R[buffered_2M]=$(med ioctl $MNT/bench/ctx/data $M2)
umount_kvfs

mount_kvfs $W/store-hot "codec=lz4,chunk=$CHUNK,ram=2G,gpu=cuda"
cp $DATA $MNT/bench/ctx/data
"$B/kvfs-bench-gpu" ioctl $MNT/bench/ctx/data $M64 1 >/dev/null   # fills the tier
R[hot_64M]=$(med ioctl $MNT/bench/ctx/data $M64)
R[hot_2M]=$(med ioctl $MNT/bench/ctx/data $M2)
R[write_64M]=$(med ioctl-write $MNT/bench/ctx/data $M64)
R[query]=$("$B/kvfs-bench-gpu" query $MNT/bench/ctx/data $((4 << 10)) $RUNS | awk '/^median/ {print $5}')
grep -E '^kvfs_(tier_(hits|misses)_total|gpu_pinned_bytes|gpu_(load|copy)_wait_seconds_total|gpu_load_seconds_total|gpu_loads_total|gpu_direct_loads_total|gpu_window_bytes)' $MNT/.kvfs/stats | sed 's/^/  [hot] /'
umount_kvfs

gb() { echo "${R[$1]}" | cut -d' ' -f1; }
us() { echo "${R[$1]}" | cut -d' ' -f2; }
ratio() { awk -v a="$(gb $1)" -v b="$(gb $2)" 'BEGIN { printf "%.2fx", a / b }'; }
{
	echo "| path (1 GiB, chunk=$CHUNK, median of $RUNS) | 64 MiB requests GB/s | vs limit | vs pread+memcpy | 2 MiB requests GB/s | us per 2 MiB request |"
	echo "|---|---|---|---|---|---|"
	echo "| in-process pinned cudaMemcpy (limit) | $(gb limit_64M) | 1.00x | | $(gb limit_2M) | $(us limit_2M) |"
	echo "| in-process, 1 MiB async copies from page-locked huge pages, 8 streams | $(gb chunks_64M) | $(ratio chunks_64M limit_64M) | | $(gb chunks_2M) | $(us chunks_2M) |"
	echo "| pread + cudaMemcpy, pageable | $(gb pread_64M) | $(ratio pread_64M limit_64M) | 1.00x | $(gb pread_2M) | $(us pread_2M) |"
	echo "| pread + cudaMemcpy, pinned | $(gb pinned_64M) | $(ratio pinned_64M limit_64M) | | $(gb pinned_2M) | $(us pinned_2M) |"
	echo "| GPU_READ hot (DRAM tier) | $(gb hot_64M) | $(ratio hot_64M limit_64M) | $(ratio hot_64M pread_64M) | $(gb hot_2M) | $(us hot_2M) |"
	for c in none lz4 zstd; do
		echo "| GPU_READ cold, codec=$c | $(gb cold_${c}_64M) | $(ratio cold_${c}_64M limit_64M) | $(ratio cold_${c}_64M pread_64M) | $(gb cold_${c}_2M) | $(us cold_${c}_2M) |"
	done
	echo "| GPU_READ cold, codec=none, gpu_pin=0 (through buffers) | $(gb buffered_64M) | $(ratio buffered_64M limit_64M) | $(ratio buffered_64M pread_64M) | $(gb buffered_2M) | $(us buffered_2M) |"
	echo
	echo "| GPU_WRITE (1 GiB, 64 MiB requests, a close() at the end of each run) | GB/s | vs in-process pinned device-to-host copy ($(gb d2h_64M) GB/s) |"
	echo "|---|---|---|"
	echo "| codec=none | $(gb write_none_64M) | $(ratio write_none_64M d2h_64M) |"
	echo "| codec=lz4 (the default) | $(gb write_64M) | $(ratio write_64M d2h_64M) |"
	echo
	echo "A QUERY ioctl round trip (the fixed cost of any ioctl through FUSE): $(echo ${R[query]}) us."
} | tee $OUT/bench_gpu.md
