/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the qcow2 writer tests: temporary directories, running
 * qemu-img, a deterministic PRNG and a raw reference image.
 */
#ifndef BSYNC_TEST_QCOW2_COMMON_H
#define BSYNC_TEST_QCOW2_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qcow2.h"
#include "tap.h"

static char tq_dir[256];
static char tq_out[8192];	/* output of the last tq_run() */

static uint64_t tq_rng = 0x9e3779b97f4a7c15ull;

__attribute__((unused))
static uint64_t tq_rand(void)
{
	/* xorshift64* */
	tq_rng ^= tq_rng >> 12;
	tq_rng ^= tq_rng << 25;
	tq_rng ^= tq_rng >> 27;
	return tq_rng * 0x2545f4914f6cdd1dull;
}

__attribute__((unused))
static uint32_t q_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

__attribute__((unused))
static uint64_t q_be64(const uint8_t *p)
{
	return (uint64_t)q_be32(p) << 32 | q_be32(p + 4);
}

__attribute__((unused))
static uint64_t tq_below(uint64_t n)
{
	return n ? tq_rand() % n : 0;
}

__attribute__((unused))
static void tq_fill(void *buf, size_t len)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = tq_rand() | 1;	/* never an all-zero word */
		size_t n = len - i < 8 ? len - i : 8;

		memcpy(p + i, &v, n);
	}
}

__attribute__((unused))
static const char *tq_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tq_dir, name);
	return buf;
}

/* Run a shell command, keep its output (stdout+stderr), return exit code. */
__attribute__((format(printf, 1, 2), unused))
static int tq_run(const char *fmt, ...)
{
	char cmd[2048];
	size_t n = 0;
	va_list ap;
	FILE *f;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	strncat(cmd, " 2>&1", sizeof(cmd) - strlen(cmd) - 1);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (n + 1 < sizeof(tq_out)) {
		size_t r = fread(tq_out + n, 1, sizeof(tq_out) - 1 - n, f);

		if (!r)
			break;
		n += r;
	}
	while (n && (tq_out[n - 1] == '\n' || tq_out[n - 1] == ' '))
		n--;
	tq_out[n] = 0;
	/* drain anything beyond the buffer */
	while (fgetc(f) != EOF)
		;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

__attribute__((unused))
static void tq_setup(const char *name)
{
	const char *t = getenv("TMPDIR");

	snprintf(tq_dir, sizeof(tq_dir), "%s/%s.XXXXXX", t && *t ? t : "/tmp", name);
	if (!mkdtemp(tq_dir)) {
		printf("Bail out! mkdtemp %s: %s\n", tq_dir, strerror(errno));
		exit(1);
	}
	if (tq_run("qemu-img --version") != 0) {
		printf("1..0 # SKIP qemu-img not installed\n");
		exit(0);
	}
}

__attribute__((unused))
static void tq_cleanup(void)
{
	if (tq_dir[0] && !getenv("TQ_KEEP"))
		tq_run("rm -rf '%s'", tq_dir);
}

/* qemu-img check: 0 when consistent with no leaks (output kept on failure). */
__attribute__((unused))
static int tq_check(const char *img)
{
	return tq_run("qemu-img check -f qcow2 --output=json '%s'", img);
}

/* qemu-img compare -s (strict: allocation must not matter, sizes too). */
__attribute__((unused))
static int tq_compare(const char *img, const char *raw)
{
	return tq_run("qemu-img compare -f qcow2 -F raw '%s' '%s'", img, raw);
}

/* Raw reference file kept in step with the image. */
__attribute__((unused))
static int tq_raw_create(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

__attribute__((unused))
static int tq_raw_write(int fd, uint64_t off, const void *buf, size_t len)
{
	return pwrite(fd, buf, len, (off_t)off) == (ssize_t)len ? 0 : -1;
}

__attribute__((unused))
static int tq_raw_zero(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t z[65536];

	while (len) {
		size_t n = len < sizeof(z) ? len : sizeof(z);

		if (pwrite(fd, z, n, (off_t)off) != (ssize_t)n)
			return -1;
		off += n;
		len -= n;
	}
	return 0;
}

#endif
