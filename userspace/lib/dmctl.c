// SPDX-License-Identifier: GPL-2.0
/*
 * Device-mapper control through libdevmapper: see dmctl.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <libdevmapper.h>
#include <linux/dm-ioctl.h>

#include "dmctl.h"

static pthread_once_t dmctl_once = PTHREAD_ONCE_INIT;
/* libdm keeps global state; serialise our calls into it. */
static pthread_mutex_t dmctl_lock = PTHREAD_MUTEX_INITIALIZER;

/* libdm logs through this; keep it quiet, errors come back as errno. */
__attribute__((format(printf, 5, 6)))
static void dmctl_log(int level, const char *file, int line, int dm_errno, const char *f, ...)
{
	(void)level; (void)file; (void)line; (void)dm_errno; (void)f;
}

static void dmctl_init(void)
{
	setenv("DM_DISABLE_UDEV", "1", 0);
	dm_udev_set_sync_support(0);
	dm_log_with_errno_init(dmctl_log);
}

static struct dm_task *task_new(int type, const char *name)
{
	struct dm_task *dmt;

	pthread_once(&dmctl_once, dmctl_init);
	dmt = dm_task_create(type);
	if (!dmt)
		return NULL;
	if (name && !dm_task_set_name(dmt, name)) {
		dm_task_destroy(dmt);
		return NULL;
	}
	return dmt;
}

/* Run a task; 0 or -errno (the kernel's errno where libdm kept it). */
static int task_run(struct dm_task *dmt)
{
	int ok, err;

	pthread_mutex_lock(&dmctl_lock);
	errno = 0;
	ok = dm_task_run(dmt);
	err = dm_task_get_errno(dmt);
	if (!err)
		err = errno;
	pthread_mutex_unlock(&dmctl_lock);
	if (ok)
		return 0;
	return err ? -err : -EIO;
}

static int simple_task(int type, const char *name)
{
	struct dm_task *dmt = task_new(type, name);
	int r;

	if (!dmt)
		return -ENOMEM;
	dm_task_no_open_count(dmt);
	r = task_run(dmt);
	dm_task_destroy(dmt);
	if (!r) {
		pthread_mutex_lock(&dmctl_lock);
		dm_task_update_nodes();
		pthread_mutex_unlock(&dmctl_lock);
	}
	return r;
}

static int load_task(int type, const char *name, const struct dmctl_table *t, size_t n, bool ro)
{
	struct dm_task *dmt = task_new(type, name);
	int r = -ENOMEM;
	size_t i;

	if (!dmt)
		return -ENOMEM;
	if (ro && !dm_task_set_ro(dmt))
		goto out;
	for (i = 0; i < n; i++)
		if (!dm_task_add_target(dmt, t[i].start, t[i].length, t[i].type, t[i].params))
			goto out;
	r = task_run(dmt);
	if (!r && type == DM_DEVICE_CREATE) {
		pthread_mutex_lock(&dmctl_lock);
		dm_task_update_nodes();
		pthread_mutex_unlock(&dmctl_lock);
	}
out:
	dm_task_destroy(dmt);
	return r;
}

static int create(const char *name, uint64_t sectors, const char *type, const char *params,
		  bool ro)
{
	struct dmctl_table t = { 0, sectors, (char *)type, (char *)params };

	return load_task(DM_DEVICE_CREATE, name, &t, 1, ro);
}

int dmctl_create(const char *name, uint64_t sectors, const char *type, const char *params)
{
	return create(name, sectors, type, params, false);
}

int dmctl_create_ro(const char *name, uint64_t sectors, const char *type, const char *params)
{
	return create(name, sectors, type, params, true);
}

int dmctl_remove(const char *name)
{
	return simple_task(DM_DEVICE_REMOVE, name);
}

int dmctl_suspend(const char *name)
{
	return simple_task(DM_DEVICE_SUSPEND, name);
}

int dmctl_resume(const char *name)
{
	return simple_task(DM_DEVICE_RESUME, name);
}

int dmctl_load_table(const char *name, bool create, bool ro, const struct dmctl_table *t,
		     size_t n)
{
	return load_task(create ? DM_DEVICE_CREATE : DM_DEVICE_RELOAD, name, t, n, ro);
}

int dmctl_mknodes(const char *name)
{
	int ok;

	pthread_once(&dmctl_once, dmctl_init);
	pthread_mutex_lock(&dmctl_lock);
	ok = dm_mknodes(name);
	pthread_mutex_unlock(&dmctl_lock);
	return ok ? 0 : -EIO;
}

int dmctl_reload(const char *name, uint64_t sectors, const char *type, const char *params)
{
	struct dmctl_table t = { 0, sectors, (char *)type, (char *)params };
	int r = load_task(DM_DEVICE_RELOAD, name, &t, 1, false);

	if (r)
		return r;
	r = dmctl_suspend(name);
	if (!r)
		r = dmctl_resume(name);
	else
		simple_task(DM_DEVICE_CLEAR, name);
	return r;
}

/*
 * Messages go to the control device's ioctl themselves, not through libdm:
 * a message may block (gate_close waits for a device's writes to drain) and
 * several must wait at once (one per device of a transaction), while libdm
 * is not thread-safe and its calls are serialised above.  This path keeps
 * no state but the control device, opened once.
 */
static pthread_once_t control_once = PTHREAD_ONCE_INIT;
static int control_fd = -ENXIO;

static void control_open(void)
{
	char path[PATH_MAX], v[64];

	pthread_once(&dmctl_once, dmctl_init);
	/* libdm makes the control node if it is missing, as dmsetup does */
	pthread_mutex_lock(&dmctl_lock);
	dm_driver_version(v, sizeof(v));
	snprintf(path, sizeof(path), "%s/control", dm_dir());
	pthread_mutex_unlock(&dmctl_lock);
	control_fd = open(path, O_RDWR | O_CLOEXEC);
	if (control_fd < 0)
		control_fd = -errno;
}

int dmctl_message(const char *name, const char *msg, char **reply)
{
	size_t len = 16384, need = sizeof(struct dm_ioctl) + sizeof(struct dm_target_msg) +
				   strlen(msg) + 1;
	struct dm_ioctl *io;
	char *out;
	int r;

	if (reply)
		*reply = NULL;
	if (strlen(name) >= DM_NAME_LEN)
		return -EINVAL;
	pthread_once(&control_once, control_open);
	if (control_fd < 0)
		return control_fd;
	for (;;) {
		struct dm_target_msg *tm;

		len = len < need ? need : len;
		io = calloc(1, len);
		if (!io)
			return -ENOMEM;
		/* 4.2: the first interface with target messages (libdm asks for the same) */
		io->version[0] = DM_VERSION_MAJOR;
		io->version[1] = 2;
		io->data_size = len;
		io->data_start = sizeof(*io);
		memcpy(io->name, name, strlen(name) + 1);
		tm = (struct dm_target_msg *)((char *)io + io->data_start);
		memcpy(tm->message, msg, strlen(msg) + 1);
		if (ioctl(control_fd, DM_TARGET_MSG, io)) {
			r = -errno;
			free(io);
			return r;
		}
		/* the reply did not fit: again with room for it, as libdm does */
		if (!(io->flags & DM_BUFFER_FULL_FLAG))
			break;
		free(io);
		len *= 2;
	}
	r = 0;
	if (reply) {
		out = (char *)io + io->data_start;
		if (!(io->flags & DM_DATA_OUT_FLAG) || io->data_start >= len)
			*reply = strdup("");
		else
			*reply = strndup(out, len - io->data_start);
		if (!*reply)
			r = -ENOMEM;
	}
	free(io);
	return r;
}

int dmctl_status(const char *name, bool table, struct dmctl_table *out)
{
	struct dm_task *dmt = task_new(table ? DM_DEVICE_TABLE : DM_DEVICE_STATUS, name);
	char *type = NULL, *params = NULL;
	uint64_t start, length;
	int r;

	memset(out, 0, sizeof(*out));
	if (!dmt)
		return -ENOMEM;
	dm_task_no_open_count(dmt);
	r = task_run(dmt);
	if (r)
		goto out;
	dm_get_next_target(dmt, NULL, &start, &length, &type, &params);
	if (!type) {
		r = -ENODATA;
		goto out;
	}
	out->start = start;
	out->length = length;
	out->type = strdup(type);
	out->params = strdup(params ? params : "");
	if (!out->type || !out->params) {
		dmctl_table_free(out);
		r = -ENOMEM;
	}
out:
	dm_task_destroy(dmt);
	return r;
}

void dmctl_table_free(struct dmctl_table *t)
{
	free(t->type);
	free(t->params);
	t->type = NULL;
	t->params = NULL;
}

/* DM_DEVICE_INFO of name: 0 and *info, or -errno. */
static int get_info(const char *name, struct dm_info *info)
{
	struct dm_task *dmt = task_new(DM_DEVICE_INFO, name);
	int r;

	if (!dmt)
		return -ENOMEM;
	r = task_run(dmt);
	if (!r)
		r = dm_task_get_info(dmt, info) ? 0 : -EIO;
	dm_task_destroy(dmt);
	return r;
}

int dmctl_exists(const char *name)
{
	struct dm_info info;
	int r = get_info(name, &info);

	return r ? r : !!info.exists;
}

int dmctl_open_count(const char *name)
{
	struct dm_info info;
	int r = get_info(name, &info);

	if (r)
		return r;
	return info.exists ? info.open_count : -ENOENT;
}

void dmctl_names_free(char **names)
{
	for (char **p = names; p && *p; p++)
		free(*p);
	free(names);
}

static int append_name(char ***names, size_t *n, const char *name)
{
	char **grown = realloc(*names, (*n + 2) * sizeof(**names));

	if (!grown)
		return -ENOMEM;
	*names = grown;
	grown[*n] = strdup(name);
	if (!grown[*n])
		return -ENOMEM;
	grown[++*n] = NULL;
	return 0;
}

int dmctl_list_by_type(const char *type, char ***names)
{
	struct dm_task *dmt = task_new(DM_DEVICE_LIST, NULL);
	struct dm_names *dn;
	struct dmctl_table t;
	unsigned int next = 0;
	size_t n = 0;
	int r;

	*names = calloc(1, sizeof(**names));
	if (!dmt || !*names) {
		if (dmt)
			dm_task_destroy(dmt);
		return -ENOMEM;
	}
	r = task_run(dmt);
	if (r)
		goto out;
	dn = dm_task_get_names(dmt);
	if (!dn || !dn->dev)
		goto out;
	do {
		dn = (struct dm_names *)((char *)dn + next);
		if (!dmctl_status(dn->name, true, &t)) {
			if (!strcmp(t.type, type))
				r = append_name(names, &n, dn->name);
			dmctl_table_free(&t);
		}
		next = dn->next;
	} while (!r && next);
out:
	dm_task_destroy(dmt);
	if (r) {
		dmctl_names_free(*names);
		*names = NULL;
	}
	return r;
}

int dmctl_target_version(const char *type, unsigned int version[3])
{
	struct dm_task *dmt = task_new(DM_DEVICE_LIST_VERSIONS, NULL);
	struct dm_versions *v;
	unsigned int next = 0;
	int r;

	if (!dmt)
		return -ENOMEM;
	r = task_run(dmt);
	if (r)
		goto out;
	r = -ENOENT;
	v = dm_task_get_versions(dmt);
	do {
		v = (struct dm_versions *)((char *)v + next);
		if (!strcmp(v->name, type)) {
			memcpy(version, v->version, 3 * sizeof(unsigned int));
			r = 0;
			break;
		}
		next = v->next;
	} while (next);
out:
	dm_task_destroy(dmt);
	return r;
}
