/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Device-mapper control through libdevmapper, for the daemon and tests.
 *
 * libdm reports success as 1 and failure as 0; this module converts to
 * 0 / -errno at its boundary and never lets libdm's convention leak out.
 * udev is not used: nodes under /dev/mapper are made by libdm itself.
 * libdm's task runs are serialised (libdm is not thread-safe);
 * dmctl_message(), which may block, does not go through libdm, so that
 * messages to several devices can wait at once.
 */
#ifndef BSYNC_DMCTL_H
#define BSYNC_DMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dmctl_table {
	uint64_t start;		/* sectors */
	uint64_t length;	/* sectors */
	char *type;
	char *params;
};

/* Create and activate a one-target device (like dmsetup create). */
int dmctl_create(const char *name, uint64_t sectors, const char *type, const char *params);
/* The same, read-only (like dmsetup create --readonly). */
int dmctl_create_ro(const char *name, uint64_t sectors, const char *type, const char *params);
/*
 * Load a table of n targets (in order, contiguous) into a new device, created
 * and activated (create; like dmsetup create), or into an existing device's
 * inactive slot (like dmsetup load: resume swaps it in).
 */
int dmctl_load_table(const char *name, bool create, bool ro, const struct dmctl_table *t,
		     size_t n);
/* Make /dev/mapper/name match the kernel (like dmsetup mknodes name). */
int dmctl_mknodes(const char *name);
int dmctl_remove(const char *name);
int dmctl_suspend(const char *name);
int dmctl_resume(const char *name);
/* Load a new table and swap it in: suspend, load, resume. */
int dmctl_reload(const char *name, uint64_t sectors, const char *type, const char *params);
/*
 * Send a target message (to sector 0); *reply (malloc'd, may be empty) on
 * success if reply.  Blocks as long as the target's message does; other
 * threads' calls, messages or not, do not wait for it.
 */
int dmctl_message(const char *name, const char *msg, char **reply);
/* First target's status (table=false) or table line (table=true). */
int dmctl_status(const char *name, bool table, struct dmctl_table *out);
void dmctl_table_free(struct dmctl_table *t);
/* 1 if the device exists, 0 if not, -errno on failure. */
int dmctl_exists(const char *name);
/* How many times the device is open (by anyone), -ENOENT if there is none. */
int dmctl_open_count(const char *name);
/* Names of all devices using target type @type; NULL-terminated, free with dmctl_names_free. */
int dmctl_list_by_type(const char *type, char ***names);
void dmctl_names_free(char **names);
/* Version of a loaded target type; -ENOENT if the kernel does not know it. */
int dmctl_target_version(const char *type, unsigned int version[3]);

#endif
