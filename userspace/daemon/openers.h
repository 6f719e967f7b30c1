/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Who holds a block device open: tracking must not be slid under a disk a
 * running program (a VM's QEMU) writes through directly.
 */
#ifndef BSYNCD_OPENERS_H
#define BSYNCD_OPENERS_H

#include <stddef.h>
#include <sys/types.h>

/*
 * The processes other than this one that hold dev, or a partition of it,
 * open: their count, and "comm (pid N), ..." in who.  Processes that
 * cannot be read (gone, or hidden from us) are not counted.
 */
int dev_openers(const char *sysfs, dev_t dev, char *who, size_t len);

#endif
