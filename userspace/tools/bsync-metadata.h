/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bsync-metadata: offline check, dump and repair of a bsync metadata device
 * (format: dm-bsync/dm-bsync-format.h).  The program is a thin main() over
 * bsync_metadata_main(), so the unit tests run the real command in-process.
 */
#ifndef BSYNC_METADATA_H
#define BSYNC_METADATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses. */
#define BMD_EXIT_OK		0	/* consistent / done */
#define BMD_EXIT_PROBLEMS	1	/* check: problems found; repair: refused */
#define BMD_EXIT_USAGE		2	/* usage or I/O error */

/* CRC-32C (Castagnoli), seed ~0 and final xor ~0, as the kernel's crc32c(). */
uint32_t bmd_crc32c(const void *buf, size_t len);

struct bmd_layout {
	uint64_t log_start, log_blocks, area_start[2], area_blocks;
};

/* The layout a device of nr_blocks 4 KiB blocks is formatted with. */
void bmd_layout(uint64_t nr_blocks, struct bmd_layout *l);

/*
 * bsync-metadata check|dump|repair ...; argv[0] is the program name.
 * Normal output goes to out, messages to err; returns the exit status.
 */
int bsync_metadata_main(int argc, char **argv, FILE *out, FILE *err);

#endif
