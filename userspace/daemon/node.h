/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Nodes: bsync device-mapper devices, named by their dm name, and their
 * dirty bitmaps (held by the kernel target; the daemon keeps no copy).
 */
#ifndef BSYNCD_NODE_H
#define BSYNCD_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NODE_NAME_MAX 127
#define NODE_METADATA_MIN (64 * 1024)	/* the kernel's minimum metadata device */
#define BITMAP_NAME_MAX 1023

struct node_bitmap {
	char name[BITMAP_NAME_MAX + 1];	/* "" for a successor */
	char parent[BITMAP_NAME_MAX + 1];	/* successor's bitmap */
	bool anonymous;
	uint64_t granularity, count;	/* bytes */
	bool recording, busy;
	bool persistent;		/* kept on the metadata device */
	bool inconsistent;		/* may miss writes: only clear or remove */
};

struct node_info {
	uint64_t size;			/* bytes */
	dev_t origin;			/* origin device number */
	dev_t dev;			/* the bsync device's number */
	bool zeroed;
	bool has_metadata;		/* "metadata <dev>" in the table */
	dev_t metadata;			/* its number */
};

/* 1 if name is a bsync device, 0 if not, -errno. */
int node_exists(const char *name);
/* All bsync devices; NULL-terminated, free with node_names_free. */
int node_list(char ***names);
void node_names_free(char **names);
int node_get_info(const char *name, struct node_info *info, char *err, size_t errlen);

/* The bitmaps of a node in the kernel's order, successors after their bitmap. */
int node_bitmaps(const char *name, struct node_bitmap **out, size_t *n);
/* Find a named bitmap; 0, -ENOENT or -errno. */
int node_find_bitmap(const char *name, const char *bitmap, struct node_bitmap *out);

/*
 * Send a message to the bsync target (dm message to sector 0).  On failure
 * err gets "<node>: <msg>: <strerror>" and -errno is returned.
 */
int node_message(const char *name, const char *msg, char **reply, char *err, size_t errlen);

/* One node_message() of node_message_all(): node in, r and err out (msg its). */
struct node_msg {
	const char *node;
	const char *msg;
	int r;
	char err[512];
};

/*
 * node_message(msg) to each of m[0..n) at once (fanout.h), each one's
 * result in its r and err: a message that blocks (gate_close waits for the
 * node's writes to drain) holds back none of the others.
 */
void node_message_all(struct node_msg *m, size_t n, const char *msg);

/*
 * Create a bsync device over origin (a block device path), keeping its
 * persistent bitmaps on the block device metadata if not NULL.  Refused
 * (-EBUSY, naming the processes) while another process holds origin or a
 * partition of it open, unless force.
 */
int node_add(const char *name, const char *origin, bool zeroed, const char *metadata,
	     bool force, char *err, size_t errlen);
int node_remove(const char *name, char *err, size_t errlen);

/* /dev/mapper/<name> */
void node_path(const char *name, char *buf, size_t len);

#endif
