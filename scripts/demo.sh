#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds kvfs, mounts a demo store (capped at 1 GiB) and writes one real KV
# context into it.
# Usage (as root, from the repository): bash scripts/demo.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
dir=${1:-/tmp/kvfs-demo}
mnt=$dir/mnt
mkdir -p "$mnt"
mountpoint -q "$mnt" && fusermount3 -u "$mnt"
./build/kvfs -o codec=zstd,capacity=1G "$dir/store" "$mnt"
ctx=$mnt/stories260k/gpl3-2048tok
run() { echo "\$ $*"; "$@"; echo; }
# Publish by rename: write the layers into a temporary directory first.
mkdir -p "$mnt/stories260k/.tmp-gpl3"
cp tests/data/kv/gpl3/* "$mnt/stories260k/.tmp-gpl3/"
setfattr -n user.model -v stories260K "$mnt/stories260k/.tmp-gpl3"
rm -rf "$ctx"
mv "$mnt/stories260k/.tmp-gpl3" "$ctx"
run ls -l "$ctx"
run du -sh --apparent-size "$ctx"
run du -sh "$ctx"
run getfattr -d "$ctx"
run getfattr -n user.kvfs.stored_bytes "$ctx"
run cmp tests/data/kv/gpl3/layer0.v.f16 "$ctx/layer0.v.f16"
run ./build/kvfsctl ls "$mnt"
run ./build/kvfsctl stats "$mnt"
echo "kvfs is mounted on $mnt (store in $dir/store); unmount with: fusermount3 -u $mnt"
