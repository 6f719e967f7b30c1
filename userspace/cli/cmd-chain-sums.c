// SPDX-License-Identifier: GPL-2.0
/*
 * chain verify's check of an image's data against the checksum record the
 * writer kept beside it (lib/qcow2-sums.h): every data cluster the image
 * holds is read and its XXH64 compared with the one recorded when the
 * backup wrote it, which catches what the structure check cannot: data
 * that changed on the backup disk after it was written.  An image without
 * a record is checked as before ("no checksums").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd-chain.h"
#include "qcow2-read.h"
#include "qcow2-sums.h"

/* The record against the image it claims to be of: 0, or a problem set. */
static int record_matches(struct link *l, const struct qcow2_sums *s, const char *rec)
{
	const struct qcow2_info *info = l->info;

	if (!s->complete) {
		chain_problem(l, EXIT_CHAIN_DAMAGED, "its checksum record %s is an unfinished image's, "
			      "but the image is complete: the record is not this image's", rec);
	} else if (s->cluster_size != info->cluster_size || s->virtual_size != info->virtual_size ||
		   s->image_file_size != info->file_size) {
		chain_problem(l, EXIT_CHAIN_DAMAGED, "its checksum record %s is of another image "
			      "(a file of %llu bytes, this one has %llu)", rec,
			      (unsigned long long)s->image_file_size,
			      (unsigned long long)info->file_size);
	} else {
		return 0;
	}
	snprintf(l->hint, sizeof(l->hint), "the image was rewritten or replaced after its backup "
		 "(qemu-img commit, check -r, a copy?): if it is sound, delete %s%s to verify it "
		 "without checksums", l->path, QCOW2_SUMS_SUFFIX);
	return -1;
}

/* Each data cluster of the image against the record: the counts in l. */
static int compare_clusters(struct link *l, struct qcow2_reader *r, struct qcow2_sums *s)
{
	uint64_t size = l->info->virtual_size, cs = l->info->cluster_size;
	uint8_t *buf = malloc(cs);
	int rc = buf ? 0 : -ENOMEM;

	for (uint64_t off = 0; !rc && off < size;) {
		enum qcow2_extent kind;
		uint64_t len = 0, n = size - off < cs ? size - off : cs;
		struct qcow2_sum *e;

		rc = qcow2_reader_extent(r, off, size - off, &kind, &len);
		if (rc || kind != QCOW2_EXT_DATA) {
			off += len;
			continue;
		}
		rc = qcow2_reader_pread(r, buf, n, off);
		if (rc)
			break;
		l->sums_clusters++;
		e = qcow2_sums_find(s, off);
		if (e)
			e->seen = true;
		if (!e || e->hash != qcow2_sum_of(buf, n)) {
			if (l->sums_bad < CHAIN_BAD_OFFSETS)
				l->bad_off[l->sums_bad] = off;
			l->sums_bad++;
		}
		off += n;
	}
	free(buf);
	for (size_t i = 0; i < s->n; i++)
		l->sums_extra += !s->e[i].seen;
	return rc;
}

void chain_check_sums(struct link *l, struct qcow2_reader *r)
{
	struct qcow2_sums s;
	char err[512], rec[PATH_MAX + 8];
	int rc = qcow2_sums_load(l->path, &s, err, sizeof(err));

	qcow2_sums_path(l->path, rec, sizeof(rec));
	l->sums = rc > 0 ? SUMS_CHECKED : rc == 0 ? SUMS_NONE : SUMS_UNREADABLE;
	if (rc < 0) {
		chain_problem(l, rc == -EUCLEAN ? EXIT_CHAIN_DAMAGED : EXIT_FAILED, "%s", err);
		snprintf(l->hint, sizeof(l->hint), "delete %s%s to verify the image without checksums",
			 l->path, QCOW2_SUMS_SUFFIX);
		return;
	}
	if (!rc || record_matches(l, &s, rec))
		goto out;
	rc = compare_clusters(l, r, &s);
	if (rc) {
		chain_problem(l, EXIT_FAILED, "reading its data clusters: %s",
			      rc == -ENOMEM ? strerror(ENOMEM) : qcow2_reader_errmsg(r));
	} else if (l->sums_bad) {
		chain_problem(l, EXIT_CHAIN_DAMAGED, "%llu data cluster%s differ%s from the checksums "
			      "recorded when it was written, the first at guest offset %llu",
			      (unsigned long long)l->sums_bad, l->sums_bad > 1 ? "s" : "",
			      l->sums_bad > 1 ? "" : "s", (unsigned long long)l->bad_off[0]);
		snprintf(l->hint, sizeof(l->hint), "the backup disk changed them after the backup: "
			 "this point and those above it cannot be trusted; restore an older point, "
			 "and start a new chain with a full backup");
	} else if (l->sums_extra) {
		chain_problem(l, EXIT_CHAIN_DAMAGED, "its checksum record %s names %llu cluster%s the "
			      "image does not hold", rec, (unsigned long long)l->sums_extra,
			      l->sums_extra > 1 ? "s" : "");
		snprintf(l->hint, sizeof(l->hint), "clusters were lost from the image's tables after "
			 "the backup: restore an older point, and start a new chain with a full backup");
	}
out:
	qcow2_sums_free(&s);
}

json_object *chain_sums_json(const struct link *l)
{
	json_object *o, *a;
	char rec[PATH_MAX + 8];

	if (l->sums != SUMS_CHECKED)
		return NULL;
	o = json_object_new_object();
	a = json_object_new_array();
	qcow2_sums_path(l->path, rec, sizeof(rec));
	json_object_object_add(o, "record", json_object_new_string(rec));
	json_object_object_add(o, "clusters", json_object_new_int64((int64_t)l->sums_clusters));
	json_object_object_add(o, "bad", json_object_new_int64((int64_t)l->sums_bad));
	json_object_object_add(o, "not-in-image", json_object_new_int64((int64_t)l->sums_extra));
	for (uint64_t i = 0; i < l->sums_bad && i < CHAIN_BAD_OFFSETS; i++)
		json_object_array_add(a, json_object_new_int64((int64_t)l->bad_off[i]));
	json_object_object_add(o, "bad-offsets", a);
	return o;
}

const char *chain_sums_text(const struct link *l, char *buf, size_t len)
{
	if (l->sums == SUMS_NONE)
		return "no checksums";
	if (l->sums != SUMS_CHECKED)
		return l->sums == SUMS_UNREADABLE ? "unreadable" : "-";
	if (l->sums_bad)
		snprintf(buf, len, "%llu bad", (unsigned long long)l->sums_bad);
	else
		snprintf(buf, len, "%llu ok", (unsigned long long)l->sums_clusters);
	return buf;
}
