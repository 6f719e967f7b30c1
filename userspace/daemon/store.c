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
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "store.h"

#define STACK_DEPTH_MAX 16

/* statfs f_type of file systems with no block device of their own */
#define FS_TMPFS	0x01021994
#define FS_RAMFS	0x858458f6
#define FS_OVERLAY	0x794c7630
#define FS_BTRFS	0x9123683e

static int walk(const char *sysfs, dev_t dev, const dev_t *protect, size_t n,
		int depth, char *chain, size_t chainlen);

/*
 * Devices whose data lives behind a server bsyncd cannot see (a user-space
 * or network daemon that may itself sit on the protected device): a store
 * there cannot be proved safe.
 */
static const char *const untraceable[] = { "nbd", "ublkb", "drbd", "rbd", NULL };

static bool name_untraceable(const char *name)
{
	for (const char *const *p = untraceable; *p; p++)
		if (!strncmp(name, *p, strlen(*p)))
			return true;
	return false;
}

/* mountinfo of the file system with device number dev: its type, source, options. */
static int mount_of(dev_t dev, char *type, char *source, char *opts)
{
	char line[PATH_MAX * 2], want[32];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int r = -ENOENT;

	if (!f)
		return -errno;
	snprintf(want, sizeof(want), "%u:%u", major(dev), minor(dev));
	while (r && fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - "), *mm = line;
		int i;

		for (i = 0; i < 2 && mm; i++)	/* mount ID, parent ID, major:minor */
			mm = strchr(mm + 1, ' ');
		if (!sep || !mm || strncmp(mm + 1, want, strlen(want)) || mm[1 + strlen(want)] != ' ')
			continue;
		if (sscanf(sep + 3, "%63s %1023s %1023s", type, source, opts) >= 2)
			r = 0;
	}
	fclose(f);
	return r;
}

/*
 * A file system with an anonymous device number (no block device of its
 * own): memory (tmpfs, ramfs) is safe; overlayfs writes to its upper
 * directory, btrfs to the device it was mounted from; anything else (NFS,
 * FUSE, 9p, CIFS, ...) stores data where bsyncd cannot follow, so it is
 * refused.
 */
static int walk_anon_fs(const char *sysfs, const char *path, dev_t dev, const dev_t *protect,
			size_t n, int depth, char *chain, size_t chainlen)
{
	char type[64] = "", source[1024] = "", opts[1024] = "";
	struct statfs sf;
	struct stat sb;
	size_t clen = strlen(chain);
	char *up;

	for (size_t i = 0; i < n; i++)
		if (protect[i] == dev)
			return -ELOOP;
	if (statfs(path, &sf))
		return -errno;
	if (sf.f_type == FS_TMPFS || sf.f_type == FS_RAMFS)
		return 0;
	mount_of(dev, type, source, opts);
	snprintf(chain + clen, chainlen - clen, "%s%s %u:%u", clen ? " -> " : "",
		 type[0] ? type : "file system", major(dev), minor(dev));
	if (depth > STACK_DEPTH_MAX)
		return -ELOOP;
	if (sf.f_type == FS_OVERLAY && (up = strstr(opts, "upperdir="))) {
		up += strlen("upperdir=");
		up[strcspn(up, ",")] = 0;
		if (!stat(up, &sb))
			return major(sb.st_dev) ? walk(sysfs, sb.st_dev, protect, n, depth + 1, chain, chainlen) :
				walk_anon_fs(sysfs, up, sb.st_dev, protect, n, depth + 1, chain, chainlen);
	}
	if (sf.f_type == FS_BTRFS && !stat(source, &sb) && S_ISBLK(sb.st_mode))
		return walk(sysfs, sb.st_rdev, protect, n, depth + 1, chain, chainlen);
	return -EXDEV;
}

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
	struct stat sb;
	char *slash;

	if (!stat(path, &sb)) {
		*out = sb.st_dev;
		return 0;
	}
	slash = strrchr(path, '/');
	if (!slash)
		return -ENOENT;
	*slash = 0;
	if (stat(*path ? path : "/", &sb))
		return -errno;
	*out = sb.st_dev;
	return 0;
}

static int walk(const char *sysfs, dev_t dev, const dev_t *protect, size_t n,
		int depth, char *chain, size_t chainlen)
{
	char base[PATH_MAX], path[PATH_MAX + 64], line[PATH_MAX];
	size_t i, self_end, clen = strlen(chain);
	struct dirent *de;
	struct stat sb;
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
	if (stat(base, &sb))
		return 0;	/* not a block device */
	snprintf(path, sizeof(path), "%s/uevent", base);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "DEVNAME=", 8) && name_untraceable(line + 8)) {
			line[strcspn(line, "\n")] = 0;
			clen = strlen(chain);
			snprintf(chain + clen, chainlen - clen, " (%s)", line + 8);
			fclose(f);
			return -EXDEV;
		}
	}
	if (f)
		fclose(f);

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
			if (del && stat(line, &sb))
				*del = 0;
			if (!fs_dev_of(line, &lower)) {
				r = major(lower) ? walk(sysfs, lower, protect, n, depth + 1, chain, chainlen) :
					walk_anon_fs(sysfs, line, lower, protect, n, depth + 1, chain, chainlen);
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
	else if (r == -EXDEV)
		snprintf(err, errlen, "the %s is on storage whose backing bsyncd cannot trace (%s): "
			 "it could sit on the protected device and deadlock its writes; "
			 "put the %s on a local disk or tmpfs", what, chain, what);
	return r;
}

/* The file system holding an open file, traced like a device. */
static int store_check_file(int fd, const char *path, const dev_t *protect, size_t nprotect,
			    char *err, size_t errlen)
{
	char chain[1024] = "";
	struct stat sb;
	int r;

	if (fstat(fd, &sb))
		return -errno;
	if (major(sb.st_dev))
		return store_check_stacking("/sys", sb.st_dev, protect, nprotect, err, errlen);
	r = walk_anon_fs("/sys", path, sb.st_dev, protect, nprotect, 0, chain, sizeof(chain));
	if (r == -ELOOP)
		snprintf(err, errlen, "the store is stacked on the protected device (%s); "
			 "put the store on another disk", chain);
	else if (r == -EXDEV)
		snprintf(err, errlen, "the store %s is on storage whose backing bsyncd cannot trace "
			 "(%s): it could sit on the protected device and deadlock its writes; "
			 "put the store on a local disk or tmpfs", path, chain);
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
	uint32_t flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
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
		/*
		 * Direct I/O: the loop driver then keeps many copies in flight
		 * (buffered, it writes one at a time through the page cache,
		 * which also fills memory with data nobody rereads soon).
		 * Where the file system cannot do O_DIRECT the driver falls
		 * back to buffered by itself, or refuses: then buffered.
		 */
		cfg.info.lo_flags = flags;
		snprintf((char *)cfg.info.lo_file_name, LO_NAME_SIZE, "bsyncd-store");
		if (!ioctl(fd, LOOP_CONFIGURE, &cfg)) {
			close(ctl);
			st->fd = fd;
			return 0;
		}
		r = -errno;
		close(fd);
		if (r == -EINVAL && (flags & LO_FLAGS_DIRECT_IO)) {
			flags &= ~LO_FLAGS_DIRECT_IO;
			continue;
		}
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
			return r == -ELOOP || r == -EXDEV ? -EINVAL : r;
		/*
		 * Probe that nobody claims it (mounted, in a dm table), then hold
		 * it without O_EXCL: session_start's own exclusive open would
		 * fail against ours.
		 */
		fd = open(x_store, O_RDWR | O_CLOEXEC | O_EXCL);
		if (fd < 0) {
			r = -errno;
			snprintf(err, errlen, "cannot open store %s: %s%s", x_store, strerror(-r),
				 r == -EBUSY ? " (it is mounted or used by another device)" : "");
			return r;
		}
		close(fd);
		fd = open(x_store, O_RDWR | O_CLOEXEC);
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
	r = store_check_file(fd, path, protect, nprotect, err, errlen);
	if (!r && fstat(fd, &sb))
		r = -errno;
	if (r) {
		if (r == -ELOOP || r == -EXDEV)
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
