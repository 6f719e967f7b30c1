// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl image info: what bsyncd recorded in a backup image it wrote.
 * Reads the file itself; the daemon is not asked.
 */
#include <errno.h>
#include <string.h>

#include "bsyncctl.h"
#include "qcow2.h"

json_object *image_record_json(char *text)
{
	json_object *o = json_object_new_object();
	char *line, *save = NULL;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');

		if (!eq)
			continue;
		*eq = 0;
		json_object_object_add(o, line, json_object_new_string(eq + 1));
	}
	return o;
}

static const char *field(json_object *rec, const char *key)
{
	const char *s = jstr(rec, key);

	return s ? s : "";
}

int cmd_image_info(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "IMAGE" };
	char text[QCOW2_TEXT_MAX], err[512], copied[32], len[32];
	json_object *rec;
	char **pos;
	int n, r;

	r = cli_parse_plain(c, cmd, argc, argv, 1, 1, names, &pos, &n);
	if (r)
		return r;
	cli_set_what(c, "image info %s", pos[0]);
	r = qcow2_read_partial(pos[0], text, sizeof(text), err, sizeof(err));
	if (r < 0) {
		cli_error(c, "%s", err);
		return EXIT_FAILED;
	}
	rec = image_record_json(text);
	if (c->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "filename", json_object_new_string(pos[0]));
		json_object_object_add(o, "partial", json_object_new_boolean(r == 1));
		json_object_object_add(o, "partial-record", r == 1 ? rec : NULL);
		if (r != 1)
			json_object_put(rec);
		print_json(c, o);
		json_object_put(o);
		return EXIT_OK;
	}
	fprintf(c->out, "image:    %s\n", pos[0]);
	if (r != 1) {
		fprintf(c->out, "partial:  no\n");
	} else {
		const char *result = field(rec, "result"), *error = field(rec, "error");

		fprintf(c->out, "partial:  yes: job '%s' %s%s%s%s, %s of %s copied\n", field(rec, "job"),
			result, error[0] ? " (" : "", error, error[0] ? ")" : "",
			fmt_size_c(c, strtoull(field(rec, "copied"), NULL, 10), copied, sizeof(copied)),
			fmt_size_c(c, strtoull(field(rec, "len"), NULL, 10), len, sizeof(len)));
		fprintf(c->out, "backup:   device %s, sync %s", field(rec, "device"), field(rec, "sync"));
		if (field(rec, "bitmap")[0])
			fprintf(c->out, ", bitmap %s (%s)", field(rec, "bitmap"), field(rec, "bitmap-mode"));
		fprintf(c->out, "\n");
		if (!strcmp(field(rec, "bitmap-mode"), "always"))
			fprintf(c->out, "note:     with bitmap-mode always, the next incremental "
				"builds on this image: keep it as its backing file\n");
		else
			fprintf(c->out, "note:     the bitmap kept what this image misses: "
				"do not chain onto it; delete it\n");
	}
	json_object_put(rec);
	return EXIT_OK;
}
