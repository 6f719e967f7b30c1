// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 writer: the refcount blocks and table (QEMU's qcow2-refcount.c).
 *
 * The writer only appends, so refcounts are not kept per cluster while the
 * image is written: every cluster in [0, img->end) is in use (refcount 1)
 * except the free ranges in img->holes, and everything from img->end on is
 * free.  A hole list costs far less memory than a refcount per cluster,
 * and it is all the close needs to place the refcount structures (in the
 * holes first) and generate them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2-internal.h"

static bool in_holes(const struct qcow2_image *img, uint64_t c, size_t *hint)
{
	while (*hint < img->nholes &&
	       img->holes[*hint].start + img->holes[*hint].len <= c)
		(*hint)++;
	return *hint < img->nholes && img->holes[*hint].start <= c;
}

/* Take n contiguous clusters: first fit in a hole, else append at end. */
static uint64_t take_clusters(struct qcow2_range *h, size_t *nh, uint64_t *end,
			      uint64_t n)
{
	for (size_t i = 0; i < *nh; i++) {
		if (h[i].len >= n) {
			uint64_t start = h[i].start;

			h[i].start += n;
			h[i].len -= n;
			if (!h[i].len) {
				memmove(&h[i], &h[i + 1], (*nh - i - 1) * sizeof(*h));
				(*nh)--;
			}
			return start;
		}
	}
	*end += n;
	return *end - n;
}

static void set_refcount(uint8_t *blk, unsigned order, uint64_t i)
{
	if (order < 3) {
		unsigned w = 1u << order;

		blk[(i * w) / 8] |= (uint8_t)(1u << ((i * w) % 8));
	} else {
		unsigned bytes = 1u << (order - 3);

		blk[i * bytes + bytes - 1] = 1;
	}
}

/*
 * Place and write the refcount blocks and table.  Sets *rt_off and
 * *rt_clusters for the header.
 */
int qcow2_write_refcounts(struct qcow2_image *img, uint64_t *rt_off,
			  uint64_t *rt_clusters)
{
	uint64_t per_blk = (uint64_t)img->cs * 8 >> img->refcount_order;
	uint64_t nrb = (img->end + per_blk - 1) / per_blk, nrt = 1;
	struct qcow2_range *h = NULL;
	uint64_t *blk_at = NULL, rt = 0, end = 0;
	uint8_t *buf = NULL, *table = NULL;
	size_t nh = 0, hint = 0;
	int rc = -ENOMEM;

	for (;;) {
		uint64_t need_rb, need_rt;

		free(h);
		free(blk_at);
		h = malloc((img->nholes + 1) * sizeof(*h));
		blk_at = malloc(nrb * sizeof(*blk_at));
		if (!h || !blk_at)
			goto out;
		memcpy(h, img->holes, img->nholes * sizeof(*h));
		nh = img->nholes;
		end = img->end;
		rt = take_clusters(h, &nh, &end, nrt);
		for (uint64_t i = 0; i < nrb; i++)
			blk_at[i] = take_clusters(h, &nh, &end, 1);
		need_rb = (end + per_blk - 1) / per_blk;
		need_rt = (need_rb * 8 + img->cs - 1) >> img->cluster_bits;
		if (need_rb <= nrb && need_rt <= nrt)
			break;
		nrb = need_rb > nrb ? need_rb : nrb;
		nrt = need_rt > nrt ? need_rt : nrt;
	}
	if (nrt << img->cluster_bits > QCOW2_MAX_RT_BYTES) {
		rc = qcow2_fail(img, -EFBIG, "refcount table would exceed 8 MiB");
		goto out;
	}
	/* commit the allocation */
	memcpy(img->holes, h, nh * sizeof(*h));
	img->nholes = nh;
	img->end = end;

	buf = malloc(img->cs);
	table = calloc(nrt, img->cs);
	if (!buf || !table)
		goto out;
	for (uint64_t b = 0; b < nrb; b++) {
		uint64_t first = b * per_blk;

		memset(buf, 0, img->cs);
		for (uint64_t i = 0; i < per_blk && first + i < img->end; i++) {
			if (!in_holes(img, first + i, &hint))
				set_refcount(buf, img->refcount_order, i);
		}
		rc = qcow2_pwrite_all(img->fd, buf, img->cs,
				      blk_at[b] << img->cluster_bits);
		if (rc) {
			rc = qcow2_fail(img, rc, "writing refcount blocks");
			goto out;
		}
		q_put64(table + b * 8, blk_at[b] << img->cluster_bits);
	}
	rc = qcow2_pwrite_all(img->fd, table, nrt << img->cluster_bits,
			      rt << img->cluster_bits);
	if (rc) {
		rc = qcow2_fail(img, rc, "writing the refcount table");
		goto out;
	}
	*rt_off = rt << img->cluster_bits;
	*rt_clusters = nrt;
out:
	if (rc == -ENOMEM)
		qcow2_fail(img, rc, "allocating refcount structures");
	free(h);
	free(blk_at);
	free(buf);
	free(table);
	return rc;
}
