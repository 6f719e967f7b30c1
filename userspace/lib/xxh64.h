/* SPDX-License-Identifier: GPL-2.0 */
/*
 * XXH64 (Yann Collet's xxHash, 64-bit, as libxxhash's XXH64()): the hash
 * of the writer's per-cluster checksum record (qcow2-sums.h).  Our own
 * implementation of the published algorithm: no new library for the
 * writer, and the same value as the reference's.
 */
#ifndef BSYNC_XXH64_H
#define BSYNC_XXH64_H

#include <stddef.h>
#include <stdint.h>

/* XXH64 of buf with seed: xxh64("", 0, 0) == 0xef46db3751d8e999. */
uint64_t xxh64(const void *buf, size_t len, uint64_t seed);

#endif
