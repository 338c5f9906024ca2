/* SPDX-License-Identifier: Apache-2.0 */
/* kv_store: chunk records appended to large segment files.
 *
 * Every record describes itself (docs/format.md): magic, version, codec,
 * filter, raw and stored length, owner inode and chunk index, and xxh3
 * checksums of header and payload. Records are never rewritten in place;
 * freeing one punches a hole, and a segment with nothing live is deleted.
 * All functions are thread-safe. */
#ifndef KV_STORE_H
#define KV_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define KV_REC_MAGIC 0x3152564bu /* "KVR1" */
#define KV_REC_VERSION 1
#define KV_REC_HDR 64
#define KV_REC_TYPE_CHUNK 1
#define KV_REC_TYPE_INODE 2         /* an inode's metadata (src/store/meta.h) */
#define KV_REC_IDX_INODE UINT64_MAX /* the idx of inode records (index: -1) */
#define KV_SEG_MAGIC "KVFSSEG"
#define KV_SEG_VERSION 1
#define KV_SEG_HDR 64
/* The largest segment number: 2^24 segments (16 PiB of 1 GiB segments).
 * A file in segments/ named beyond it is not kvfs's and is left alone; a
 * record location beyond it is damage (EIO). */
#define KV_SEG_ID_MAX 0xffffffu

/* Where a record lives. len covers header and payload. */
struct kv_loc {
	uint32_t seg;
	uint32_t len;
	uint64_t off;
};

/* A record header, decoded. */
struct kv_rec {
	uint8_t type, codec, elem, flags;
	uint32_t raw_len, stored_len, seg;
	uint64_t ino, idx, payload_hash;
};

struct kv_store;

/* Open the segment directory dir (created when absent). id is the store's
 * 16-byte identity, written into every segment header; the headers of the
 * segments there are read, and only segments whose header names this
 * store (or that are too short to hold a record) are ever deleted or
 * garbage-collected: the index judges only its own store's segments. */
int kv_store_open(const char *dir, const uint8_t id[16], size_t segment_size, size_t max_chunk,
		  struct kv_store **out);
void kv_store_close(struct kv_store *st);

/* The first segment whose header names another store (0: none). An index
 * whose identity the segments do not carry cannot vouch for them (it was
 * recreated or copied in): the store must not be opened with it. */
uint32_t kv_store_foreign(struct kv_store *st);

/* Count len live bytes in segment seg (called while loading the index, so
 * that emptied segments can be deleted). */
void kv_store_account(struct kv_store *st, uint32_t seg, uint64_t len);
/* Delete segments that hold no live record; call once after accounting. */
void kv_store_drop_empty(struct kv_store *st);

/* Opens of a store are numbered (the epoch, kept by kv_fs in the index);
 * each segment header records the epoch of the open that made it (bytes
 * 44..51, 0 before epochs). kv_store_epoch_seen is the highest among the
 * store's segments at kv_store_open; kv_store_set_epoch sets the one new
 * segments get. */
uint64_t kv_seg_header_epoch(const uint8_t h[KV_SEG_HDR]);
uint64_t kv_store_epoch_seen(struct kv_store *st);
void kv_store_set_epoch(struct kv_store *st, uint64_t epoch);

/* While held, appends fail with -ENOSPC at once: the room left on the
 * backing filesystem is the index's (kv_fs's reserve is out). */
void kv_store_hold(struct kv_store *st, int held);

/* Append to up to n segments at once (1 to 8, default 1): buffered writes
 * to one file are serialised by the kernel, so concurrent appends to one
 * segment run at one thread's copy speed. Call before the first append. */
void kv_store_set_lanes(struct kv_store *st, int n);

int kv_store_append(struct kv_store *st, uint64_t ino, uint64_t idx, const struct kv_encoded *enc,
		    uint32_t raw_len, struct kv_loc *loc);

/* Append inode record of ino: len bytes of payload (src/store/meta.h), stored
 * as they are. */
int kv_store_append_inode(struct kv_store *st, uint64_t ino, const void *data, uint32_t len,
			  struct kv_loc *loc);

/* Decode a segment header: its id, the store id and the chunk size of the
 * store (0 in segments written before it was recorded). 0 or -EIO. */
int kv_seg_header_read(const uint8_t h[KV_SEG_HDR], uint32_t *seg, uint8_t id[16], uint32_t *chunk);

/* Read the record at loc, check that it is chunk idx of ino with raw_len
 * bytes and that both checksums match, and decode it into dst.
 * Returns 0, -EIO on any mismatch (logged), or another negative errno. */
int kv_store_read(struct kv_store *st, const struct kv_loc *loc, uint64_t ino, uint64_t idx,
		  void *dst, uint32_t raw_len);

/* kv_store_read's checks and decoding of a record already in memory:
 * header h and its stored payload bytes, expected to be chunk idx of ino
 * with raw_len bytes, written to segment seg. Decodes into dst (a payload
 * stored raw is copied, unless it already is dst). 0 or -EIO. */
int kv_rec_verify(struct kv_codec_ctx *cc, const uint8_t h[KV_REC_HDR], const uint8_t *payload,
		  uint32_t stored, uint32_t seg, uint64_t ino, uint64_t idx, void *dst,
		  uint32_t raw_len);

void kv_store_free(struct kv_store *st, const struct kv_loc *loc);

/* A descriptor of segment seg's file of the caller's own (to close), and
 * the file's size now, for mapping it (src/store/segmap.h). -EIO if there is no
 * such segment. */
int kv_store_seg_open(struct kv_store *st, uint32_t seg, uint64_t *size);

/* Start reading the record at loc into the page cache, without waiting. */
void kv_store_prefetch(struct kv_store *st, const struct kv_loc *loc);

/* Offline garbage collection (no daemon on the store): punch out of
 * segment seg every byte that is neither its header nor one of the n live
 * records (sorted by offset); delete the segment when n is 0. Adds the
 * bytes given back to *freed. */
int kv_store_reclaim(struct kv_store *st, uint32_t seg, const struct kv_loc *live, size_t n,
		     uint64_t *freed);
/* Highest segment id present. */
uint32_t kv_store_highest(struct kv_store *st);

/* Bytes of live records (headers included) in all segments. */
uint64_t kv_store_live(struct kv_store *st);

/* Make every record appended so far durable. */
int kv_store_sync(struct kv_store *st);

/* Walking the records of a segment without the index (rebuild, fsck,
 * fuzzing). The scanner looks for record headers anywhere in buf (the
 * bytes of segment seg, its own header included): a candidate counts when
 * its header checksum is right and it fits in buf; it is then handed to cb
 * with its location, decoded header and payload (payload_ok: the payload
 * checksum matches too), and the scan goes on after it; otherwise the scan
 * moves on by one byte, so punched holes and torn tails are skipped. cb
 * returns 0 to go on, anything else stops the scan and is returned. */
typedef int (*kv_scan_fn)(void *arg, const struct kv_loc *loc, const struct kv_rec *r,
			  const uint8_t *payload, int payload_ok);
int kv_seg_scan_buf(const uint8_t *buf, size_t len, uint32_t seg, kv_scan_fn cb, void *arg);
/* The same over segment file path (mapped read-only). -errno if it cannot
 * be opened or mapped. */
int kv_seg_scan_file(const char *path, uint32_t seg, kv_scan_fn cb, void *arg);

/* Header (de)serialisation, exposed for tests and tools. */
void kv_rec_encode(uint8_t hdr[KV_REC_HDR], const struct kv_rec *r);
int kv_rec_decode(const uint8_t hdr[KV_REC_HDR], struct kv_rec *r);

#endif
