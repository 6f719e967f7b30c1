// SPDX-License-Identifier: GPL-2.0
/*
 * Nodes: bsync devices through libdevmapper (dmctl).  See node.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "dmctl.h"
#include "fanout.h"
#include "node.h"
#include "openers.h"
#include "store.h"

void node_path(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "/dev/mapper/%s", name);
}

int node_exists(const char *name)
{
	struct dmctl_table t;
	int r;

	if (!*name || strlen(name) > NODE_NAME_MAX || strchr(name, '/'))
		return 0;
	r = dmctl_exists(name);
	if (r <= 0)
		return r;
	r = dmctl_status(name, true, &t);
	if (r)
		return r == -ENODATA || r == -ENXIO || r == -ENOENT ? 0 : r;
	r = !strcmp(t.type, "bsync");
	dmctl_table_free(&t);
	return r;
}

int node_list(char ***names)
{
	return dmctl_list_by_type("bsync", names);
}

void node_names_free(char **names)
{
	dmctl_names_free(names);
}

/* "<origin> [<#features> [zeroed] [alloc_granularity <bytes>] [metadata <dev>]]" */
static void parse_table(const char *params, struct node_info *info)
{
	char *copy = strdup(params), *save = NULL, *tok;
	unsigned int ma, mi, i = 0;

	if (!copy)
		return;
	for (tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save), i++) {
		if (i == 0 && sscanf(tok, "%u:%u", &ma, &mi) == 2) {
			info->origin = makedev(ma, mi);
		} else if (!strcmp(tok, "zeroed")) {
			info->zeroed = true;
		} else if (!strcmp(tok, "metadata")) {
			tok = strtok_r(NULL, " ", &save);
			if (tok && sscanf(tok, "%u:%u", &ma, &mi) == 2) {
				info->has_metadata = true;
				info->metadata = makedev(ma, mi);
			}
			if (!tok)
				break;
		}
	}
	free(copy);
}

int node_get_info(const char *name, struct node_info *info, char *err, size_t errlen)
{
	struct dmctl_table t;
	char path[256];
	struct stat st;
	int r;

	memset(info, 0, sizeof(*info));
	r = dmctl_status(name, true, &t);
	if (r) {
		snprintf(err, errlen, "%s: cannot read the device table: %s", name, strerror(-r));
		return r;
	}
	info->size = t.length * 512;
	parse_table(t.params, info);
	dmctl_table_free(&t);
	node_path(name, path, sizeof(path));
	if (!stat(path, &st))
		info->dev = st.st_rdev;
	return 0;
}

int node_message(const char *name, const char *msg, char **reply, char *err, size_t errlen)
{
	int r = dmctl_message(name, msg, reply);

	if (r && err)
		snprintf(err, errlen, "%s: message \"%.200s\" failed: %s (see the kernel log)",
			 name, msg, strerror(-r));
	return r;
}

static void message_one(void *item)
{
	struct node_msg *m = item;

	m->r = node_message(m->node, m->msg, NULL, m->err, sizeof(m->err));
}

void node_message_all(struct node_msg *m, size_t n, const char *msg)
{
	size_t i;

	for (i = 0; i < n; i++) {
		m[i].msg = msg;
		m[i].r = 0;
		m[i].err[0] = 0;
	}
	fanout(m, n, sizeof(*m), message_one);
}

/* "key=value" fields of one list line. */
static void parse_fields(char *line, struct node_bitmap *b)
{
	char *save = NULL, *tok;

	for (tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(tok, '=');

		if (!eq)
			continue;
		*eq++ = 0;
		if (!strcmp(tok, "name"))
			snprintf(b->name, sizeof(b->name), "%s", eq);
		else if (!strcmp(tok, "parent"))
			snprintf(b->parent, sizeof(b->parent), "%s", eq);
		else if (!strcmp(tok, "granularity"))
			b->granularity = strtoull(eq, NULL, 10);
		else if (!strcmp(tok, "count"))
			b->count = strtoull(eq, NULL, 10);
		else if (!strcmp(tok, "recording"))
			b->recording = atoi(eq);
		else if (!strcmp(tok, "busy"))
			b->busy = atoi(eq);
		else if (!strcmp(tok, "persistent"))
			b->persistent = atoi(eq);
		else if (!strcmp(tok, "inconsistent"))
			b->inconsistent = atoi(eq);
	}
}

int node_bitmaps(const char *name, struct node_bitmap **out, size_t *n)
{
	char *reply = NULL, *save = NULL, *line;
	struct node_bitmap *v = NULL;
	size_t cnt = 0;
	int r;

	*out = NULL;
	*n = 0;
	r = dmctl_message(name, "list", &reply);
	if (r)
		return r;
	for (line = strtok_r(reply, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct node_bitmap *p, *b;
		bool succ = !strncmp(line, "successor ", 10);

		if (!succ && strncmp(line, "bitmap ", 7))
			continue;
		p = realloc(v, (cnt + 1) * sizeof(*v));
		if (!p) {
			free(v);
			free(reply);
			return -ENOMEM;
		}
		v = p;
		b = &v[cnt++];
		memset(b, 0, sizeof(*b));
		b->anonymous = succ;
		parse_fields(line + (succ ? 10 : 7), b);
	}
	free(reply);
	*out = v;
	*n = cnt;
	return 0;
}

int node_find_bitmap(const char *name, const char *bitmap, struct node_bitmap *out)
{
	struct node_bitmap *v;
	size_t n, i;
	int r = node_bitmaps(name, &v, &n);

	if (r)
		return r;
	r = -ENOENT;
	for (i = 0; i < n; i++)
		if (!v[i].anonymous && !strcmp(v[i].name, bitmap)) {
			*out = v[i];
			r = 0;
			break;
		}
	free(v);
	return r;
}

/*
 * Open what (a role: "origin", "metadata") at path: a block device of at
 * least min bytes; its number and size.
 */
static int open_blockdev(const char *what, const char *path, uint64_t min, dev_t *dev,
			 uint64_t *bytes, char *err, size_t errlen)
{
	struct stat st;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "Could not open '%s': %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) || !S_ISBLK(st.st_mode)) {
		close(fd);
		snprintf(err, errlen, "'%s' is not a block device", path);
		return -ENOTBLK;
	}
	r = ioctl(fd, BLKGETSIZE64, bytes) ? -errno : 0;
	close(fd);
	if (r) {
		snprintf(err, errlen, "cannot get the size of '%s': %s", path, strerror(-r));
		return r;
	}
	if (*bytes < min) {
		if (min <= 512)
			snprintf(err, errlen, "'%s' is empty", path);
		else
			snprintf(err, errlen, "%s device '%s' is too small: %" PRIu64 " bytes, %" PRIu64
				 " at least", what, path, *bytes, min);
		return -EINVAL;
	}
	*dev = st.st_rdev;
	return 0;
}

int node_add(const char *name, const char *origin, bool zeroed, const char *metadata,
	     bool force, char *err, size_t errlen)
{
	char who[256];
	char params[160];
	uint64_t bytes, md_bytes;
	dev_t odev, mdev = 0;
	int r;

	if (!*name || strlen(name) > NODE_NAME_MAX || strchr(name, '/') || name[0] == '.') {
		snprintf(err, errlen, "Invalid node-name: '%s'", name);
		return -EINVAL;
	}
	r = open_blockdev("origin", origin, 512, &odev, &bytes, err, errlen);
	if (r)
		return r;
	/* writes through such an opener would not be tracked */
	r = force ? 0 : dev_openers("/sys", odev, who, sizeof(who));
	if (r > 0) {
		snprintf(err, errlen, "'%s' is open by %s: its writes would bypass tracking; stop "
			 "it, add the device, then give it /dev/mapper/%s instead (or pass force "
			 "to add it anyway)", origin, who, name);
		return -EBUSY;
	}
	if (metadata) {
		r = open_blockdev("metadata", metadata, NODE_METADATA_MIN, &mdev, &md_bytes, err, errlen);
		if (r)
			return r;
		if (mdev == odev) {
			snprintf(err, errlen, "metadata device '%s' is the origin '%s': "
				 "the bitmaps need a block device of their own", metadata, origin);
			return -EINVAL;
		}
		/* Overlapping (a partition of the origin's disk, or the reverse): writes collide. */
		r = dev_check_stacking("/sys", mdev, &odev, 1, "metadata device", err, errlen);
		if (!r)
			r = dev_check_stacking("/sys", odev, &mdev, 1, "origin", err, errlen);
		if (r)
			return r == -ELOOP ? -EINVAL : r;
	}
	snprintf(params, sizeof(params), "%u:%u", major(odev), minor(odev));
	if (zeroed || metadata)
		snprintf(params + strlen(params), sizeof(params) - strlen(params), " %d%s",
			 zeroed + 2 * !!metadata, zeroed ? " zeroed" : "");
	if (metadata)
		snprintf(params + strlen(params), sizeof(params) - strlen(params), " metadata %u:%u",
			 major(mdev), minor(mdev));
	r = dmctl_create(name, bytes / 512, "bsync", params);
	if (r) {
		if (r == -EEXIST || (r == -EBUSY && dmctl_exists(name) > 0))
			snprintf(err, errlen, "a device named '%s' already exists", name);
		else if (r == -EBUSY)
			snprintf(err, errlen, "cannot create bsync device '%s': %s%s%s is in use "
				 "(by another bsync device, a mount or another program)", name, origin,
				 metadata ? " or " : "", metadata ? metadata : "");
		else
			snprintf(err, errlen, "cannot create bsync device '%s' over %s: %s"
				 " (is dm-bsync loaded?%s see the kernel log)", name, origin, strerror(-r),
				 metadata ? " does the metadata device hold something else?" : "");
	}
	return r;
}

int node_remove(const char *name, char *err, size_t errlen)
{
	int r = dmctl_remove(name);

	if (r)
		snprintf(err, errlen, "cannot remove '%s': %s%s", name, strerror(-r),
			 r == -EBUSY ? " (it is open: unmount it or stop its users first)" : "");
	return r;
}
