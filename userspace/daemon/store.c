// SPDX-License-Identifier: GPL-2.0
/*
 * Scratch stores: see store.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "store.h"

#define STACK_DEPTH_MAX 16

static int read_devno(const char *path, dev_t *out)
{
	unsigned int ma, mi;
	FILE *f = fopen(path, "re");
	int r = -ENOENT;

	if (!f)
		return -errno;
	if (fscanf(f, "%u:%u", &ma, &mi) == 2) {
		*out = makedev(ma, mi);
		r = 0;
	}
	fclose(f);
	return r;
}

/* The device holding path, or its directory's if path is gone. */
static int fs_dev_of(char *path, dev_t *out)
{
	struct stat st;
	char *slash;

	if (!stat(path, &st)) {
		*out = st.st_dev;
		return 0;
	}
	slash = strrchr(path, '/');
	if (!slash)
		return -ENOENT;
	*slash = 0;
	if (stat(*path ? path : "/", &st))
		return -errno;
	*out = st.st_dev;
	return 0;
}

static int walk(const char *sysfs, dev_t dev, const dev_t *protect, size_t n,
		int depth, char *chain, size_t chainlen)
{
	char base[PATH_MAX], path[PATH_MAX + 64], line[PATH_MAX];
	size_t i, self_end, clen = strlen(chain);
	struct dirent *de;
	struct stat st;
	dev_t lower;
	FILE *f;
	DIR *d;
	int r;

	snprintf(chain + clen, chainlen - clen, "%s%u:%u", clen ? " -> " : "",
		 major(dev), minor(dev));
	self_end = strlen(chain);
	for (i = 0; i < n; i++)
		if (protect[i] == dev)
			return -ELOOP;
	if (depth > STACK_DEPTH_MAX)
		return -ELOOP;
	snprintf(base, sizeof(base), "%s/dev/block/%u:%u", sysfs, major(dev), minor(dev));
	if (stat(base, &st))
		return 0;	/* not a block device (e.g. tmpfs) */

	/* a partition sits on its disk */
	snprintf(path, sizeof(path), "%s/partition", base);
	if (!access(path, F_OK)) {
		snprintf(path, sizeof(path), "%s/../dev", base);
		if (!read_devno(path, &lower)) {
			r = walk(sysfs, lower, protect, n, depth + 1, chain, chainlen);
			if (r)
				return r;
			chain[self_end] = 0;
		}
	}
	/* dm, md, ...: their slaves */
	snprintf(path, sizeof(path), "%s/slaves", base);
	d = opendir(path);
	while (d && (de = readdir(d))) {
		char dpath[PATH_MAX + 300];

		if (de->d_name[0] == '.')
			continue;
		snprintf(dpath, sizeof(dpath), "%s/slaves/%s/dev", base, de->d_name);
		if (read_devno(dpath, &lower))
			continue;
		r = walk(sysfs, lower, protect, n, depth + 1, chain, chainlen);
		if (r) {
			closedir(d);
			return r;
		}
		chain[self_end] = 0;
	}
	if (d)
		closedir(d);
	/* a loop device sits on the file system holding its file */
	snprintf(path, sizeof(path), "%s/loop/backing_file", base);
	f = fopen(path, "re");
	if (f) {
		bool got = fgets(line, sizeof(line), f) != NULL;

		fclose(f);
		if (got) {
			char *del;

			line[strcspn(line, "\n")] = 0;
			del = strstr(line, " (deleted)");
			if (del && stat(line, &st))
				*del = 0;
			if (!fs_dev_of(line, &lower)) {
				r = walk(sysfs, lower, protect, n, depth + 1, chain, chainlen);
				if (r)
					return r;
				chain[self_end] = 0;
			}
		}
	}
	return 0;
}

int dev_check_stacking(const char *sysfs, dev_t dev, const dev_t *protect, size_t nprotect,
		       const char *what, char *err, size_t errlen)
{
	char chain[1024] = "";
	int r = walk(sysfs, dev, protect, nprotect, 0, chain, sizeof(chain));

	if (r == -ELOOP)
		snprintf(err, errlen, "the %s is stacked on the protected device (%s); "
			 "put the %s on another disk", what, chain, what);
	return r;
}

int store_check_stacking(const char *sysfs, dev_t dev, const dev_t *protect, size_t nprotect,
			 char *err, size_t errlen)
{
	return dev_check_stacking(sysfs, dev, protect, nprotect, "store", err, errlen);
}

static int loop_attach(int file_fd, struct store *st, char *err, size_t errlen)
{
	struct loop_config cfg;
	int ctl, nr, fd, r, tries;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot open /dev/loop-control: %s (modprobe loop?)",
			 strerror(-r));
		return r;
	}
	for (tries = 0; tries < 8; tries++) {
		nr = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (nr < 0) {
			r = -errno;
			close(ctl);
			snprintf(err, errlen, "no free loop device: %s", strerror(-r));
			return r;
		}
		snprintf(st->dev, sizeof(st->dev), "/dev/loop%d", nr);
		fd = open(st->dev, O_RDWR | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT) {
			/* no devtmpfs node yet: make one */
			mknod(st->dev, S_IFBLK | 0600, makedev(7, (unsigned int)nr));
			fd = open(st->dev, O_RDWR | O_CLOEXEC);
		}
		if (fd < 0) {
			r = -errno;
			close(ctl);
			snprintf(err, errlen, "cannot open %s: %s", st->dev, strerror(-r));
			return r;
		}
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = (unsigned int)file_fd;
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		snprintf((char *)cfg.info.lo_file_name, LO_NAME_SIZE, "bsyncd-store");
		if (!ioctl(fd, LOOP_CONFIGURE, &cfg)) {
			close(ctl);
			st->fd = fd;
			return 0;
		}
		r = -errno;
		close(fd);
		if (r != -EBUSY)	/* EBUSY: someone took it first, retry */
			break;
	}
	close(ctl);
	snprintf(err, errlen, "cannot attach the store file to %s: %s", st->dev, strerror(-r));
	return r;
}

int store_provision(const char *dir, const char *x_store, uint64_t size,
		    const dev_t *protect, size_t nprotect, struct store *st,
		    char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct stat sb;
	int fd, r;

	st->fd = -1;
	st->dev[0] = 0;
	if (x_store && !stat(x_store, &sb) && S_ISBLK(sb.st_mode)) {
		r = store_check_stacking("/sys", sb.st_rdev, protect, nprotect, err, errlen);
		if (r)
			return r == -ELOOP ? -EINVAL : r;
		fd = open(x_store, O_RDWR | O_CLOEXEC | O_EXCL);
		if (fd < 0) {
			r = -errno;
			snprintf(err, errlen, "cannot open store %s: %s", x_store, strerror(-r));
			return r;
		}
		if (snprintf(st->dev, sizeof(st->dev), "%s", x_store) >= (int)sizeof(st->dev)) {
			close(fd);
			snprintf(err, errlen, "store path %s is too long", x_store);
			return -ENAMETOOLONG;
		}
		st->fd = fd;
		return 0;
	}
	if (x_store) {
		fd = open(x_store, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			snprintf(err, errlen, "cannot open store %s: %s", x_store, strerror(-r));
			return r;
		}
		snprintf(path, sizeof(path), "%s", x_store);
	} else {
		snprintf(path, sizeof(path), "%s/bsyncd-store.XXXXXX", dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			snprintf(err, errlen, "cannot create a store file in %s: %s%s", dir,
				 strerror(-r), r == -ENOENT ? " (create it or pass --store-dir)" : "");
			return r;
		}
	}
	if (fstat(fd, &sb)) {
		r = -errno;
		goto bad;
	}
	r = store_check_stacking("/sys", sb.st_dev, protect, nprotect, err, errlen);
	if (r) {
		if (r == -ELOOP)
			r = -EINVAL;
		goto bad;
	}
	/* a file the job named is used as it is; ours is as large as the device */
	if (!x_store && (uint64_t)sb.st_size < size && ftruncate(fd, (off_t)size)) {
		r = -errno;
		snprintf(err, errlen, "cannot size store file %s to %llu bytes: %s", path,
			 (unsigned long long)size, strerror(-r));
		goto bad;
	}
	r = loop_attach(fd, st, err, errlen);
	if (r)
		goto bad;
	close(fd);
	if (!x_store)
		unlink(path);	/* lives as long as the loop device */
	return 0;
bad:
	if (!err[0])
		snprintf(err, errlen, "store %s: %s", path, strerror(-r));
	close(fd);
	if (!x_store)
		unlink(path);
	return r;
}

void store_release(struct store *st)
{
	if (st->fd >= 0)
		close(st->fd);
	st->fd = -1;
}
