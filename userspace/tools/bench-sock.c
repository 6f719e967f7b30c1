// SPDX-License-Identifier: GPL-2.0
/*
 * bench-sock: the bound on a pull-mode read, for scripts/bench-bsyncd.
 * Moves all of FILE (a block device: its whole size) from one process to
 * another through a Unix stream socket, with no protocol, and prints the
 * seconds it took and the bytes received.  The receiver recv()s into a
 * buffer, as every NBD client does; the sender is one of:
 *   splice  FILE -> pipe -> socket with splice(): no copy by the sender
 *           (bsyncd's path for clients in the clear); the receiver's copy
 *           is the only one, so no NBD server can beat this
 *   copy    buffered pread() into a buffer, send(): two copies more
 *           (bsyncd's path before, and for TLS; qemu-nbd's with its
 *           default cache)
 *   direct  O_DIRECT pread() into an aligned buffer, send(): one copy more
 *
 * With STREAMS (default 1), that many sender/receiver pairs each move a
 * slice of FILE at once, as a client with several connections and threads
 * does (nbdcopy: up to 4 connections, a thread a CPU).
 *
 * usage: bench-sock splice|copy|direct FILE [STREAMS]
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (512u << 10)
#define RECV_BUF (4u << 20)

static int send_all(int s, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = send(s, p, n, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int sender(const char *mode, const char *path, int s, uint64_t off, uint64_t end)
{
	bool direct = !strcmp(mode, "direct");
	int fd = open(path, O_RDONLY | (direct ? O_DIRECT : 0)), p[2];
	uint8_t *buf = NULL;

	if (fd < 0)
		return perror(path), 1;
	if (!strcmp(mode, "splice")) {
		loff_t o = (loff_t)off;

		if (pipe(p) || fcntl(p[1], F_SETPIPE_SZ, 2 * CHUNK) < 0)
			return perror("pipe"), 1;
		while (off < end) {
			size_t k = end - off < CHUNK ? (size_t)(end - off) : CHUNK, in = 0;

			while (in < k) {
				ssize_t r = splice(fd, &o, p[1], NULL, k - in, SPLICE_F_MOVE);

				if (r <= 0)
					return perror("splice from the file"), 1;
				in += (size_t)r;
			}
			while (in) {
				ssize_t r = splice(p[0], NULL, s, NULL, in, SPLICE_F_MOVE | SPLICE_F_MORE);

				if (r <= 0)
					return perror("splice to the socket"), 1;
				in -= (size_t)r;
			}
			off += k;
		}
		return 0;
	}
	if (posix_memalign((void **)&buf, 4096, CHUNK))
		return 1;
	while (off < end) {
		size_t k = end - off < CHUNK ? (size_t)(end - off) : CHUNK;
		ssize_t r = pread(fd, buf, k, (off_t)off);

		if (r <= 0)
			return perror("pread"), 1;
		if (send_all(s, buf, (size_t)r))
			return perror("send"), 1;
		off += (uint64_t)r;
	}
	free(buf);
	return 0;
}

/* One pair: a sender process for [off, off + size), received here. */
static int stream(const char *mode, const char *path, uint64_t off, uint64_t size)
{
	uint64_t got = 0;
	uint8_t *buf = malloc(RECV_BUF);
	int sv[2], st;
	pid_t pid;

	if (!buf || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || (pid = fork()) < 0) {
		perror("bench-sock");
		free(buf);
		return 1;
	}
	if (!pid) {
		close(sv[0]);
		_exit(sender(mode, path, sv[1], off, off + size));
	}
	close(sv[1]);
	for (;;) {
		ssize_t r = recv(sv[0], buf, RECV_BUF, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (uint64_t)r;
	}
	free(buf);
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) || got != size) {
		fprintf(stderr, "bench-sock: %llu of %llu bytes moved\n", (unsigned long long)got,
			(unsigned long long)size);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	uint64_t size, slice;
	int fd, st, i, n = argc == 4 ? atoi(argv[3]) : 1, bad = 0;

	if (argc < 3 || argc > 4 || n < 1 || n > 64 ||
	    (strcmp(argv[1], "splice") && strcmp(argv[1], "copy") && strcmp(argv[1], "direct"))) {
		fprintf(stderr, "usage: bench-sock splice|copy|direct FILE [STREAMS]\n");
		return 2;
	}
	fd = open(argv[2], O_RDONLY);
	if (fd < 0) {
		perror(argv[2]);
		return 1;
	}
	size = (uint64_t)lseek(fd, 0, SEEK_END);
	close(fd);
	slice = (size / (uint64_t)n + CHUNK - 1) / CHUNK * CHUNK;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n; i++) {
		uint64_t off = slice * (uint64_t)i;
		pid_t pid;

		if (off >= size)
			break;
		pid = fork();
		if (pid < 0)
			return perror("fork"), 1;
		if (!pid)
			_exit(stream(argv[1], argv[2], off, size - off < slice ? size - off : slice));
	}
	while (wait(&st) > 0)
		bad |= !WIFEXITED(st) || WEXITSTATUS(st);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (bad)
		return 1;
	printf("%.6f %llu\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
	       (unsigned long long)size);
	return 0;
}
