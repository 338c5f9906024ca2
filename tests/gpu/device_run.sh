#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The GPU tests of the fast path, on a machine with an NVIDIA GPU, for
# codec none, lz4 and zstd: the C test through libkvfs, the PyTorch test
# through the Python client, and the engine example. Exits 77 without a GPU.
# Usage: device_run.sh BUILD_DIR [LOG_DIR]
set -u
B=$(cd "$1" && pwd)
LOG=${2:-/tmp}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/kvfs-gpu.XXXXXX)
MNT=$W/mnt
rc=0
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || { echo "SKIP: no NVIDIA GPU"; exit 77; }
for f in libkvfs-gpu-cuda.so kvfs-test-gpu-cuda kvfs-example-gpu; do
	[ -e "$B/$f" ] || { echo "SKIP: $B has no $f (build with the CUDA toolkit, -DKVFS_GPU_CUDA=ON)"; exit 77; }
done
mkdir -p $MNT
export PYTHONPATH=$SRC/src/python${PYTHONPATH:+:$PYTHONPATH}
for codec in none lz4 zstd; do
	rm -rf $W/store; mkdir -p $W/store
	# In the foreground (backgrounded here): its log is the test's.
	"$B/kvfs" -f -o codec=$codec,chunk=1M,gpu=cuda $W/store $MNT 2>$LOG/kvfs-$codec.log &
	for i in $(seq 100); do mountpoint -q $MNT && break; sleep 0.1; done
	echo "== codec=$codec"
	for t in "$B/kvfs-test-gpu-cuda $MNT $SRC/tests/data/kv/gpl3" \
		 "python3 $SRC/tests/gpu/test_gpu_torch.py $MNT $SRC/tests/data/kv/gpl3" \
		 "python3 $SRC/examples/gpu_context.py $MNT" \
		 "$B/kvfs-example-gpu $MNT gpu-example-c 8"; do
		echo "-- $t"
		$t; r=$?
		[ $r -eq 0 ] || { echo "FAILED ($r): $t"; rc=1; }
	done
	grep -E '^kvfs_gpu' $MNT/.kvfs/stats
	fusermount3 -u $MNT
	wait
done
rm -rf $W
exit $rc
