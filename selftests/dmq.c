// SPDX-License-Identifier: GPL-2.0
/*
 * dmq: dmsetup for the shell selftests, one process for many commands.
 * lib.sh's dm() sends it one request a line, "VERB<TAB>NAME[<TAB>ARG]...",
 * and reads back one line a request, "STATUS<TAB>ERROR-TEXT"; a message's
 * reply goes to the file named on the command line, as dmsetup would print
 * it. In a TCG guest a fork and exec of dmsetup is most of what a command
 * costs, and some tests send hundreds.
 *
 * Verbs (each as dmsetup's of the same name): message NAME MESSAGE;
 * create NAME LINE...; create-ro NAME LINE... (--readonly); load NAME
 * LINE...; remove, suspend, resume, mknodes NAME. A LINE is one table line,
 * "START LENGTH TYPE PARAMS".
 *
 * usage: dmq REPLY-FILE   (exits at end of input, or when its parent does)
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "dmctl.h"

#define MAX_FIELDS 64

/* The reply as dmsetup prints it: nothing if empty, else ending in a newline. */
static int write_reply(const char *path, const char *reply)
{
	size_t n = strlen(reply);
	FILE *f = fopen(path, "w");
	int r = 0;

	if (!f)
		return -errno;
	if (n && (fwrite(reply, 1, n, f) != n || (reply[n - 1] != '\n' && fputc('\n', f) == EOF)))
		r = -EIO;
	if (fclose(f) && !r)
		r = -errno;
	return r;
}

/* "START LENGTH TYPE PARAMS" into t (pointing into line); -EINVAL if malformed. */
static int parse_target(char *line, struct dmctl_table *t)
{
	char *end;

	t->start = strtoull(line, &end, 10);
	if (end == line)
		return -EINVAL;
	t->length = strtoull(end, &line, 10);
	if (line == end)
		return -EINVAL;
	line += strspn(line, " ");
	t->type = line;
	line += strcspn(line, " ");
	if (line == t->type)
		return -EINVAL;
	if (*line)
		*line++ = '\0';
	t->params = line + strspn(line, " ");
	return 0;
}

static int load(const char *name, bool create, bool ro, char **lines, int n)
{
	struct dmctl_table t[MAX_FIELDS];
	int i, r;

	if (n < 1)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		r = parse_target(lines[i], &t[i]);
		if (r)
			return r;
	}
	return dmctl_load_table(name, create, ro, t, n);
}

/* One request: 0 or -errno; *op names the ioctl for the error text. */
static int run(char **f, int n, const char *reply_file, const char **op)
{
	char *reply = NULL;
	int r;

	*op = f[0];
	if (!strcmp(f[0], "message") && n == 3) {
		r = dmctl_message(f[1], f[2], &reply);
		if (!r)
			r = write_reply(reply_file, reply ? reply : "");
		else
			write_reply(reply_file, "");
		free(reply);
		return r;
	}
	if (!strcmp(f[0], "create"))
		return load(f[1], true, false, f + 2, n - 2);
	if (!strcmp(f[0], "create-ro"))
		return load(f[1], true, true, f + 2, n - 2);
	if (!strcmp(f[0], "load")) {
		*op = "reload";
		return load(f[1], false, false, f + 2, n - 2);
	}
	if (n != 2)
		return -EINVAL;
	if (!strcmp(f[0], "remove"))
		return dmctl_remove(f[1]);
	if (!strcmp(f[0], "suspend"))
		return dmctl_suspend(f[1]);
	if (!strcmp(f[0], "resume"))
		return dmctl_resume(f[1]);
	if (!strcmp(f[0], "mknodes"))
		return dmctl_mknodes(f[1]);
	return -EINVAL;
}

int main(int argc, char **argv)
{
	pid_t parent = getppid();
	char *line = NULL, *f[MAX_FIELDS + 2];
	const char *op;
	size_t cap = 0;
	ssize_t len;
	int n, r;

	if (argc != 2) {
		fprintf(stderr, "usage: dmq REPLY-FILE\n");
		return 2;
	}
	/* Never outlive the test that started it. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) || getppid() != parent)
		return 1;
	while ((len = getline(&line, &cap, stdin)) > 0) {
		if (line[len - 1] == '\n')
			line[len - 1] = '\0';
		n = 0;
		for (char *p = line; p && n < MAX_FIELDS + 2; n++)
			f[n] = strsep(&p, "\t");
		if (n < 2) {
			printf("1\tdmq: bad request '%s'\n", line);
			fflush(stdout);
			continue;
		}
		r = run(f, n, argv[1], &op);
		if (r)
			printf("1\tdevice-mapper: %s ioctl on %s  failed: %s\n", op, f[1], strerror(-r));
		else
			printf("0\t\n");
		fflush(stdout);
	}
	free(line);
	return 0;
}
