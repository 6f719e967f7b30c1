// SPDX-License-Identifier: GPL-2.0
/*
 * dmq: "dmsetup message" for the shell selftests, one process for many
 * messages. lib.sh's dm() sends it "NAME<TAB>MESSAGE" lines and reads back
 * one line per message, "STATUS<TAB>ERROR-TEXT"; the reply goes to the file
 * named on the command line, as dmsetup would print it. In a TCG guest a
 * fork and exec of dmsetup is most of what a message costs, and some tests
 * send hundreds.
 *
 * usage: dmq REPLY-FILE   (exits at end of input, or when its parent does)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "dmctl.h"

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

int main(int argc, char **argv)
{
	pid_t parent = getppid();
	char *line = NULL, *msg, *reply;
	size_t cap = 0;
	ssize_t len;
	int r;

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
		msg = strchr(line, '\t');
		if (!msg) {
			printf("1\tdmq: bad request '%s'\n", line);
			fflush(stdout);
			continue;
		}
		*msg++ = '\0';
		reply = NULL;
		r = dmctl_message(line, msg, &reply);
		if (!r)
			r = write_reply(argv[1], reply ? reply : "");
		else
			write_reply(argv[1], "");
		free(reply);
		if (r)
			printf("1\tdevice-mapper: message ioctl on %s  failed: %s\n", line, strerror(-r));
		else
			printf("0\t\n");
		fflush(stdout);
	}
	free(line);
	return 0;
}
