// SPDX-License-Identifier: GPL-2.0
/*
 * Who holds a block device open, from /proc/PID/fd: a shared open (QEMU
 * opens its disks without O_EXCL) claims nothing in the kernel, so only
 * the file tables tell.  Partitions count: a writer to /dev/sdb1 bypasses
 * a bsync device stacked on /dev/sdb just the same.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "openers.h"

#define MAX_PARTS 128

/* dev and the partitions of it listed under <sysfs>/dev/block/M:m/. */
static size_t dev_and_parts(const char *sysfs, dev_t dev, dev_t *out)
{
	char base[256], path[600];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	out[n++] = dev;
	snprintf(base, sizeof(base), "%s/dev/block/%u:%u", sysfs, major(dev), minor(dev));
	d = opendir(base);
	while (d && (de = readdir(d)) && n < MAX_PARTS) {
		unsigned int ma, mi;
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/partition", base, de->d_name);
		if (access(path, F_OK))
			continue;
		snprintf(path, sizeof(path), "%s/%s/dev", base, de->d_name);
		f = fopen(path, "re");
		if (f && fscanf(f, "%u:%u", &ma, &mi) == 2)
			out[n++] = makedev(ma, mi);
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return n;
}

static bool holds(const char *pid, const dev_t *devs, size_t ndevs)
{
	char path[600];
	struct dirent *de;
	struct stat st;
	bool found = false;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%s/fd", pid);
	d = opendir(path);
	while (d && !found && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd/%s", pid, de->d_name);
		if (stat(path, &st) || !S_ISBLK(st.st_mode))
			continue;
		for (size_t i = 0; i < ndevs && !found; i++)
			found = st.st_rdev == devs[i];
	}
	if (d)
		closedir(d);
	return found;
}

int dev_openers(const char *sysfs, dev_t dev, char *who, size_t len)
{
	dev_t devs[MAX_PARTS];
	size_t ndevs = dev_and_parts(sysfs, dev, devs), used = 0;
	struct dirent *de;
	char self[32];
	int n = 0;
	DIR *d;

	who[0] = 0;
	snprintf(self, sizeof(self), "%d", (int)getpid());
	d = opendir("/proc");
	while (d && (de = readdir(d))) {
		char path[600], comm[64] = "?";
		FILE *f;

		if (!isdigit((unsigned char)de->d_name[0]) || !strcmp(de->d_name, self) ||
		    !holds(de->d_name, devs, ndevs))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", de->d_name);
		f = fopen(path, "re");
		if (f) {
			if (!fgets(comm, sizeof(comm), f))
				strcpy(comm, "?");
			fclose(f);
		}
		comm[strcspn(comm, "\n")] = 0;
		if (used < len)
			used += (size_t)snprintf(who + used, len - used, "%s%s (pid %s)", n ? ", " : "",
						 comm, de->d_name);
		n++;
	}
	if (d)
		closedir(d);
	return n;
}
