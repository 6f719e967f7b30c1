// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncd's store stacking check (daemon/store.c) on a made-up sysfs tree:
 * dm slaves several levels down, a partition on its disk, a loop device
 * whose file sits on the protected device (deleted file too), unrelated
 * devices, and a slave cycle that must not loop forever.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../daemon/store.c"
#include "tap.h"

static char root[256];

static void put(const char *rel, const char *text)
{
	char p[512], *s;

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	for (s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
		*s = 0;
		mkdir(p, 0755);
		*s = '/';
	}
	if (text) {
		FILE *f = fopen(p, "w");

		fputs(text, f);
		fclose(f);
	} else {
		mkdir(p, 0755);
	}
}

static void link_to(const char *rel, const char *target)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	if (symlink(target, p))
		perror("symlink");
}

int main(void)
{
	char err[512], file[512];
	dev_t prot[2] = { makedev(253, 1), makedev(253, 0) };	/* bsync dev, its origin */
	struct stat st;
	int r;

	snprintf(root, sizeof(root), "/tmp/test-bsyncd-store.%d", getpid());
	mkdir(root, 0755);
	/* 253:0 origin on sdb1 (8:17, partition of sdb 8:16); 253:1 bsync on 253:0 */
	put("devices/sdb/dev", "8:16\n");
	put("devices/sdb/sdb1/dev", "8:17\n");
	put("devices/sdb/sdb1/partition", "1\n");
	put("devices/sdb/sdb2/dev", "8:18\n");
	put("devices/sdb/sdb2/partition", "2\n");
	put("devices/sdc/dev", "8:32\n");
	put("dev/block/.keep", "");
	link_to("dev/block/8:16", "../../devices/sdb");
	link_to("dev/block/8:17", "../../devices/sdb/sdb1");
	link_to("dev/block/8:18", "../../devices/sdb/sdb2");
	link_to("dev/block/8:32", "../../devices/sdc");
	put("dev/block/253:0/slaves/sdb1/dev", "8:17\n");
	put("dev/block/253:1/slaves/dm-0/dev", "253:0\n");
	/* 253:2 linear on the bsync device, 253:3 on 253:2 */
	put("dev/block/253:2/slaves/dm-1/dev", "253:1\n");
	put("dev/block/253:3/slaves/dm-2/dev", "253:2\n");
	/* 253:4 on sdc: unrelated */
	put("dev/block/253:4/slaves/sdc/dev", "8:32\n");
	/* 253:5 and 253:6 slaves of each other (broken tree) */
	put("dev/block/253:5/slaves/dm-6/dev", "253:6\n");
	put("dev/block/253:6/slaves/dm-5/dev", "253:5\n");

	/* nbd0 (43:0): served by a process bsyncd cannot follow; 253:7 on it */
	put("dev/block/43:0/uevent", "MAJOR=43\nMINOR=0\nDEVNAME=nbd0\nDEVTYPE=disk\n");
	put("dev/block/253:7/slaves/nbd0/dev", "43:0\n");

	r = store_check_stacking(root, makedev(43, 0), prot, 2, err, sizeof(err));
	tap_ok(r == -EXDEV && strstr(err, "nbd0") && strstr(err, "cannot trace"),
	       "an nbd device cannot be proved safe: refused: %s", err);
	r = store_check_stacking(root, makedev(253, 7), prot, 2, err, sizeof(err));
	tap_ok(r == -EXDEV && strstr(err, "253:7 -> 43:0 (nbd0)"),
	       "a dm device on nbd refused, chain shown: %s", err);
	r = store_check_stacking(root, makedev(253, 4), prot, 2, err, sizeof(err));
	tap_ok(r == 0, "device on an unrelated disk is fine (%d)", r);
	r = store_check_stacking(root, makedev(8, 18), prot, 2, err, sizeof(err));
	tap_ok(r == 0, "another partition of the origin's disk is fine (%d)", r);
	r = store_check_stacking(root, makedev(253, 1), prot, 2, err, sizeof(err));
	tap_ok(r == -ELOOP && strstr(err, "253:1"), "the bsync device itself is refused: %s", err);
	r = store_check_stacking(root, makedev(253, 3), prot, 2, err, sizeof(err));
	tap_ok(r == -ELOOP && strstr(err, "253:3 -> 253:2 -> 253:1"),
	       "two dm levels above the bsync device refused, chain shown: %s", err);
	r = store_check_stacking(root, makedev(253, 5), prot, 2, err, sizeof(err));
	tap_ok(r == -ELOOP, "slave cycle ends (depth limit) instead of looping");

	/* protect the disk itself: a partition on it is refused */
	{
		dev_t disk[1] = { makedev(8, 16) };

		r = store_check_stacking(root, makedev(8, 18), disk, 1, err, sizeof(err));
		tap_ok(r == -ELOOP && strstr(err, "8:18 -> 8:16"), "partition on a protected disk refused: %s", err);
	}

	/* loop device whose file lives on a file system of a protected device */
	snprintf(file, sizeof(file), "%s/store.img", root);
	put("store.img", "x");
	stat(file, &st);
	{
		dev_t fsdev[1] = { st.st_dev };
		char text[600];

		snprintf(text, sizeof(text), "%s\n", file);
		put("dev/block/7:0/loop/backing_file", text);
		r = store_check_stacking(root, makedev(7, 0), fsdev, 1, err, sizeof(err));
		tap_ok(r == -ELOOP, "loop device on a file of the protected file system refused: %s", err);
		snprintf(text, sizeof(text), "%s/gone.img (deleted)\n", root);
		put("dev/block/7:1/loop/backing_file", text);
		r = store_check_stacking(root, makedev(7, 1), fsdev, 1, err, sizeof(err));
		tap_ok(r == -ELOOP, "deleted backing file: its directory's device is used: %s", err);
		r = store_check_stacking(root, makedev(7, 0), prot, 2, err, sizeof(err));
		tap_ok(r == 0, "same loop device with other protected devices is fine");
	}
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
		tap_ok(system(cmd) == 0, "cleanup");
	}
	return tap_done();
}
