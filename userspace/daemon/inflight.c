// SPDX-License-Identifier: GPL-2.0
/*
 * Records of the backups being written: one file per job under
 * STATE_DIR/inflight, named by the job ID (QEMU's job IDs are safe file
 * names) and holding the target's absolute path.  It is made when the
 * target is opened and removed once the image is closed, complete or
 * partial.  A record found at start-up is a job whose writer died: its
 * image keeps the crash mark (the qcow2 corrupt bit) and must not be used.
 *
 * Records are not fsync'ed: a killed daemon leaves them in the page cache,
 * and after a host crash a lost record loses only the report, never the
 * image's own mark.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inflight.h"
#include "qcow2.h"

static char records_dir[PATH_MAX];

void inflight_set_dir(const char *state_dir)
{
	if ((size_t)snprintf(records_dir, sizeof(records_dir), "%s/inflight", state_dir) >= sizeof(records_dir) ||
	    (mkdir(records_dir, 0700) && errno != EEXIST)) {
		fprintf(stderr, "bsyncd: cannot create %s: %s; images left by a daemon that dies "
			"will not be reported at the next start\n", records_dir, strerror(errno));
		records_dir[0] = 0;
	}
}

static int record_path(char *p, size_t len, const char *job_id)
{
	return records_dir[0] && (size_t)snprintf(p, len, "%s/%s", records_dir, job_id) < len ? 0 : -1;
}

void inflight_add(const char *job_id, const char *target)
{
	char p[PATH_MAX + 256], *abs = realpath(target, NULL);
	FILE *f;

	if (!abs || record_path(p, sizeof(p), job_id)) {
		free(abs);
		return;
	}
	f = fopen(p, "we");
	if (!f || fprintf(f, "%s\n", abs) < 0 || fclose(f)) {
		fprintf(stderr, "bsyncd: job %s: cannot record %s in %s: %s\n", job_id, abs, records_dir,
			strerror(errno));
		if (f)
			unlink(p);
	}
	free(abs);
}

void inflight_remove(const char *job_id)
{
	char p[PATH_MAX + 256];

	if (!record_path(p, sizeof(p), job_id))
		unlink(p);
}

/* One record: log what became of its image.  1 if it was left incomplete. */
static int report_one(const char *job_id)
{
	char p[PATH_MAX + 256], target[PATH_MAX + 2] = "", err[512];
	FILE *f;
	int r, left = 0;

	if (record_path(p, sizeof(p), job_id))
		return 0;
	f = fopen(p, "re");
	if (f) {
		if (!fgets(target, sizeof(target), f))
			target[0] = 0;
		fclose(f);
	}
	target[strcspn(target, "\n")] = 0;
	if (target[0]) {
		r = qcow2_check_complete(target, err, sizeof(err));
		if (r == -EUCLEAN) {
			fprintf(stderr, "bsyncd: recovery: job %s was writing %s when the daemon died: "
				"the image is incomplete (marked corrupt; QEMU refuses to open it "
				"read/write); delete it: its bitmap was reclaimed, so the next "
				"backup copies what it missed\n", job_id, target);
			left = 1;
		} else if (r == -ENOENT) {
			fprintf(stderr, "bsyncd: recovery: job %s was writing %s when the daemon died; "
				"the image is gone\n", job_id, target);
		} else if (r) {
			fprintf(stderr, "bsyncd: recovery: job %s was writing %s when the daemon died: %s\n",
				job_id, target, err);
		}
	}
	unlink(p);
	return left;
}

int inflight_report(void)
{
	struct dirent *d;
	DIR *dp;
	int n = 0;

	if (!records_dir[0] || !(dp = opendir(records_dir)))
		return 0;
	while ((d = readdir(dp)))
		if (d->d_name[0] != '.')
			n += report_one(d->d_name);
	closedir(dp);
	return n;
}
