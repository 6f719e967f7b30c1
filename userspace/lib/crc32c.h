/* SPDX-License-Identifier: GPL-2.0 */
/*
 * CRC-32C (Castagnoli, as iSCSI, ext4 and btrfs use): the checksum of the
 * writer's per-cluster record (qcow2-sums.h).  The SSE4.2 instruction where
 * the CPU has it, else a slicing-by-8 table; both give the same value.
 */
#ifndef BSYNC_CRC32C_H
#define BSYNC_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC-32C of buf, continuing crc (0 to start): crc32c(0, "123456789", 9) == 0xe3069283. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The same without the SSE4.2 instruction (for the test that they agree). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
