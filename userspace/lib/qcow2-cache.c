// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 writer: the L2 table cache (QEMU's qcow2-cache.c, for one table
 * type).
 *
 * A backup maps clusters all over the disk, so the L2 tables must stay in
 * memory while they fill, but a large image's tables do not all fit: a
 * bounded ring of resident tables is kept, and when it is full the table
 * loaded first is written back and dropped (a backup sweeps the disk
 * mostly in order, so no use bits are kept).  Tables reach the file only
 * through here, each once its own cluster has left the append buffer.
 */
#include <errno.h>
#include <stdlib.h>

#include "qcow2.h"
#include "qcow2-internal.h"

#define L2_CACHE_BYTES	(32u << 20)
#define MIN_L2_TABLES	4

static int write_l2(struct qcow2_image *img, uint32_t l1i)
{
	uint64_t off = img->l1[l1i];
	int rc;

	rc = qcow2_flush_abuf_over(img, off, img->cs);
	if (rc)
		return rc;
	rc = qcow2_pwrite_all(img->fd, img->l2[l1i], img->cs, off);
	return rc ? qcow2_fail(img, rc, "writing an L2 table") : 0;
}

void qcow2_set_l2_cache(struct qcow2_image *img, size_t bytes)
{
	size_t cap = bytes / img->cs;
	uint32_t *ring;

	if (cap < MIN_L2_TABLES)
		cap = MIN_L2_TABLES;
	if (img->l1_size && cap > img->l1_size)
		cap = img->l1_size;
	if (img->failed)
		return;
	/* shrinking: write back the tables that no longer fit */
	while (img->ring_n > cap) {
		uint32_t victim = img->ring[--img->ring_n];

		if (write_l2(img, victim))
			return;
		free(img->l2[victim]);
		img->l2[victim] = NULL;
	}
	ring = realloc(img->ring, cap * sizeof(*ring));
	if (!ring)
		return;
	img->ring = ring;
	img->ring_cap = cap;
	img->ring_hand = 0;
}

/*
 * Return the resident L2 table for l1i, loading it from disk or (with
 * alloc) allocating a new one.  *out is NULL if unallocated and !alloc.
 */
int qcow2_get_l2(struct qcow2_image *img, uint32_t l1i, bool alloc,
		 uint64_t **out)
{
	uint64_t *t;
	int rc;

	*out = img->l2[l1i];
	if (*out)
		return 0;
	if (!img->l1[l1i] && !alloc)
		return 0;
	if (img->ring_n == img->ring_cap) {
		uint32_t victim = img->ring[img->ring_hand];

		rc = write_l2(img, victim);
		if (rc)
			return rc;
		free(img->l2[victim]);
		img->l2[victim] = NULL;
		img->ring[img->ring_hand] = l1i;
		img->ring_hand = (img->ring_hand + 1) % img->ring_cap;
	} else {
		img->ring[img->ring_n++] = l1i;
	}
	t = calloc(1, img->cs);
	if (!t) {
		/* keep ring consistent: drop the slot we just claimed */
		for (size_t i = 0; i < img->ring_n; i++) {
			if (img->ring[i] == l1i) {
				img->ring[i] = img->ring[--img->ring_n];
				break;
			}
		}
		img->ring_hand = 0;
		return qcow2_fail(img, -ENOMEM, "allocating an L2 table");
	}
	img->l2[l1i] = t;
	if (img->l1[l1i]) {
		rc = qcow2_flush_abuf_over(img, img->l1[l1i], img->cs);
		if (rc)
			return rc;
		rc = qcow2_pread_all(img->fd, t, img->cs, img->l1[l1i]);
		if (rc)
			return qcow2_fail(img, rc, "reading an L2 table");
	} else {
		rc = qcow2_append_cluster(img, NULL, 0, &img->l1[l1i]);
		if (rc)
			return rc;
	}
	*out = t;
	return 0;
}

int qcow2_l2_cache_alloc(struct qcow2_image *img)
{
	img->l2 = calloc(img->l1_size ? img->l1_size : 1, sizeof(*img->l2));
	if (!img->l2)
		return -ENOMEM;
	qcow2_set_l2_cache(img, L2_CACHE_BYTES);
	return img->ring ? 0 : -ENOMEM;
}

int qcow2_l2_cache_flush(struct qcow2_image *img)
{
	int rc = 0;

	for (size_t i = 0; !rc && i < img->ring_n; i++)
		rc = write_l2(img, img->ring[i]);
	return rc;
}

void qcow2_l2_cache_free(struct qcow2_image *img)
{
	if (img->l2) {
		for (size_t i = 0; i < img->ring_n; i++)
			free(img->l2[img->ring[i]]);
	}
	free(img->l2);
	free(img->ring);
}
