/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the bsync guest selftests: devices, messages, bitmap
 * queries, a reference bitmap model, and direct I/O.
 */
#ifndef BSYNC_TEST_H
#define BSYNC_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmctl.h"

/*
 * Skip a test from its FIXTURE_SETUP. 6.1's harness still runs the test's
 * body after a SKIP(return) there; ending the test's own process with the
 * harness's skip status (255) does not.
 */
#define BT_SKIP_SETUP(fmt, ...) SKIP(_exit(255), fmt, ##__VA_ARGS__)

#define KiB 1024ULL
#define MiB (1024ULL * KiB)

/*
 * Whether the test @name is to run: $BSYNC_TESTS, if set, is a list of test
 * names separated by spaces or commas (the mutation check runs only the
 * case that must catch its mutant; 6.1's harness has no filter of its own).
 */
bool bt_wanted(const char *name);

/* The n-th scratch disk the VM runner attached ($BSYNC_DISKn), or NULL. */
const char *bt_disk(int n);
uint64_t bt_dev_bytes(const char *path);

/* Create "name" as bsync over origin with the given feature args ("" for none). */
int bt_create(const char *name, const char *origin, const char *features);
int bt_remove(const char *name);
/* "/dev/mapper/<name>" in a static buffer per call site's choice. */
const char *bt_path(const char *name, char *buf, size_t len);

/* Send a message; 0 or -errno. The reply, if any, is copied to reply. */
__attribute__((format(printf, 4, 5)))
int bt_msg(const char *name, char *reply, size_t len, const char *fmt, ...);

struct bt_bitmap_info {
	bool found;
	uint64_t granularity;
	uint64_t count;			/* bytes */
	bool recording;
	bool busy;
	bool has_successor;
	uint64_t succ_count;
	bool succ_recording;
};
int bt_bitmap_info(const char *dev, const char *bitmap, struct bt_bitmap_info *info);

/* Walk the extents query of a bitmap (or the allocation map, bitmap NULL). */
typedef void (*bt_extent_fn)(uint64_t off, uint64_t len, void *arg);
int bt_extents(const char *dev, const char *bitmap, unsigned int chunk,
	       bt_extent_fn fn, void *arg);

/* A reference dirty bitmap: one byte per cluster. */
struct bt_model {
	uint64_t dev_bytes;
	uint64_t gran;
	uint64_t nr;
	uint8_t *bits;
};
int bt_model_init(struct bt_model *m, uint64_t dev_bytes, uint64_t gran);
void bt_model_free(struct bt_model *m);
void bt_model_mark(struct bt_model *m, uint64_t off, uint64_t len);
uint64_t bt_model_count_bytes(const struct bt_model *m);
/* Compare the device's extents of bitmap with the model; 0 if equal. */
int bt_model_check_extents(const struct bt_model *m, const char *dev, const char *bitmap,
			   char *why, size_t whylen);

/* Deterministic PRNG (xorshift64*), seeded from BSYNC_SEED or time. */
uint64_t bt_seed(void);
uint64_t bt_rand(uint64_t *state);

/* O_DIRECT helpers; buffers must be 4 KiB aligned. */
void *bt_alloc_aligned(size_t len);
int bt_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int bt_pread_full(int fd, void *buf, size_t len, uint64_t off);

/* Run a shell command; its exit status, or -1. */
__attribute__((format(printf, 1, 2)))
int bt_sh(const char *fmt, ...);

#endif
