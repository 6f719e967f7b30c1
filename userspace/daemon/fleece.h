/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fleecing job (fleece.c): a backup job that copies nothing and holds
 * the point in time while its owner, an NBD export, lets clients read it.
 */
#ifndef BSYNCD_FLEECE_H
#define BSYNCD_FLEECE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qmp-server.h"

struct backup_job;

/*
 * Fleecing (QEMU's image fleecing: a sync=none backup job whose
 * copy-before-write preserves what the guest overwrites while clients read
 * the point-in-time view).  backup_fleece() takes the point in time on
 * device, freezing bitmap (NULL: none), and starts a job of type "backup"
 * that copies nothing.  Its owner reads the view and ends the job with
 * backup_fleece_end(): ok is the job's success (the bitmap's frozen bits
 * are cleared, QEMU's on-success rule), !ok its failure (they are kept;
 * why is the job's error).  A job-cancel calls on_cancel(arg) first (lock
 * held), which must stop reading the view and call backup_fleece_end().
 * Lock held; NULL with e set.
 */
struct run;
struct backup_job *backup_fleece(const char *job_id, const char *device, const char *bitmap,
				 void (*on_cancel)(void *arg), void *arg, struct qerr *e);
/* The view's path, its size and the bitmap's granularity (0 without one). */
void backup_fleece_view(const struct backup_job *b, char *path, size_t len, uint64_t *size,
			uint64_t *granularity);
/* The frozen bitmap's dirty runs at its granularity (NULL, 0 without one). */
const struct run *backup_fleece_dirty(const struct backup_job *b, size_t *n);
void backup_fleece_end(struct backup_job *b, bool ok, const char *why);

#endif
