/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Scratch stores for copy-before-write sessions.
 *
 * By default a sparse file in the store directory, attached to a free loop
 * device (LOOP_CTL_GET_FREE + LOOP_CONFIGURE, autoclear, direct I/O) and
 * unlinked at once: when the kernel drops the store the loop device and the
 * file's space go away by themselves, even if the daemon was killed.  A job
 * may name its own store (x-store): an existing block device, or a file
 * that is then looped the same way (not unlinked).
 *
 * A store must not be stacked on the device it protects: the daemon would
 * write into what it is preserving (or deadlock on its own held write).
 */
#ifndef BSYNCD_STORE_H
#define BSYNCD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct store {
	char dev[64];		/* block device path handed to session_start */
	int fd;			/* held open until the session holds it; -1 after */
};

/*
 * Provide a store of at least size bytes.  x_store: NULL for the default
 * (a file in dir), else a block device or a file path.  protect[] lists the
 * device numbers the store must not be stacked on (the bsync device and
 * its origin).  0 or -errno with a message.
 */
int store_provision(const char *dir, const char *x_store, uint64_t size,
		    const dev_t *protect, size_t nprotect, struct store *st,
		    char *err, size_t errlen);
/* Drop the daemon's hold (after session_start, or on failure). */
void store_release(struct store *st);

/*
 * Is dev (or anything it is stacked on: dm/md slaves, a partition's disk,
 * a loop device's backing file system) one of protect[]?  Walks
 * <sysfs>/dev/block/M:m recursively.  0 if not stacked; -ELOOP if it is,
 * with the chain in err, where what names dev ("metadata device"); other
 * -errno if sysfs cannot be read.
 */
int dev_check_stacking(const char *sysfs, dev_t dev, const dev_t *protect, size_t nprotect,
		       const char *what, char *err, size_t errlen);
/* dev_check_stacking() for a store. */
int store_check_stacking(const char *sysfs, dev_t dev, const dev_t *protect, size_t nprotect,
			 char *err, size_t errlen);

#endif
