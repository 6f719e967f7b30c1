/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What a backup copies: its sync mode's extents, asked of the kernel at
 * the instant, as a list of runs in the copy unit (QEMU's
 * backup_init_bcs_bitmap()).  The copier reads the runs in order.
 */
#ifndef BSYNCD_COPYSET_H
#define BSYNCD_COPYSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The smallest copy unit (QEMU's BACKUP_CLUSTER_SIZE_DEFAULT). */
#define BACKUP_CLUSTER_MIN (64u << 10)

enum sync_mode { SYNC_FULL, SYNC_TOP, SYNC_BITMAP, SYNC_NONE };

struct run {
	uint64_t off, len;
	bool read;		/* false: known unallocated, written as zeroes */
};

struct copyset {
	struct run *run;	/* sorted, merged, rounded out to the cluster */
	size_t n, cap;
	uint64_t size;		/* the device's, bytes */
	uint64_t cluster;	/* the copy unit */
};

/*
 * The runs of sync over node (bitmap for SYNC_BITMAP) into cs, whose size
 * and cluster are set; SYNC_NONE has none (the copier follows the kernel's
 * preserved extents instead).  0, or -errno with a message in err.
 */
int copyset_compute(struct copyset *cs, const char *node, enum sync_mode sync,
		    const char *bitmap, char *err, size_t errlen);

/* Bytes in all runs. */
uint64_t copyset_bytes(const struct copyset *cs);

void copyset_free(struct copyset *cs);

#endif
