/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Records of the backups being written, so that a daemon started after one
 * died (SIGKILL, crash) can name the images it left incomplete.
 */
#ifndef BSYNCD_INFLIGHT_H
#define BSYNCD_INFLIGHT_H

/* Where the records live (a directory "inflight" is made there). */
void inflight_set_dir(const char *state_dir);

/* A job started writing target; a failure is logged and otherwise ignored. */
void inflight_add(const char *job_id, const char *target);

/* The job closed its image (whatever the outcome). */
void inflight_remove(const char *job_id);

/*
 * At start: log every image a dead daemon left being written, check it
 * (incomplete, or closed after all), and drop the records.  Returns how
 * many images were left incomplete.
 */
int inflight_report(void);

#endif
