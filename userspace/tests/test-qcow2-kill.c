// SPDX-License-Identifier: GPL-2.0
/*
 * A writer killed mid-image (fork, write, SIGKILL) leaves an image that
 * qemu-img check reports as corrupt, that QEMU refuses to open read/write
 * and that our own open and qcow2_check_complete() refuse.  An image closed
 * with complete=false is readable but stays marked.
 */
#include <signal.h>

#include "test-qcow2-common.h"

static void killed_writer(const char *tag, bool existing, int delay_us)
{
	char path[512], err[512];
	int pfd[2], st;
	pid_t pid;
	char c;

	snprintf(path, sizeof(path), "%s/killed-%s-%d.qcow2", tq_dir,
		 existing ? "existing" : "ours", delay_us);
	if (existing &&
	    tq_run("qemu-img create -q -f qcow2 '%s' 1G", path)) {
		tap_ok(0, "%s: qemu-img create: %s", tag, tq_out);
		return;
	}
	if (pipe(pfd)) {
		tap_ok(0, "%s: pipe", tag);
		return;
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct qcow2_create_opts o = { .virtual_size = 1 << 30 };
		struct qcow2_image *img;
		static uint8_t buf[65536];
		int rc;

		close(pfd[0]);
		rc = existing ? qcow2_open_existing(path, 1 << 30, &img, err, sizeof(err))
			      : qcow2_create(path, &o, &img, err, sizeof(err));
		if (rc)
			_exit(2);
		memset(buf, 0x11, sizeof(buf));
		for (uint64_t i = 0; i < 16384; i++) {
			if (qcow2_write_cluster(img, ((i * 4099) % 16384) * 65536, buf, 65536))
				_exit(3);
			if (i == 300 && write(pfd[1], "x", 1) != 1)
				_exit(4);
		}
		/* the parent kills us before we get here, or while closing */
		qcow2_close(img, true, err, sizeof(err));
		pause();
		_exit(0);
	}
	close(pfd[1]);
	if (read(pfd[0], &c, 1) != 1) {
		close(pfd[0]);
		waitpid(pid, &st, 0);
		tap_ok(0, "%s: writer died early (status %d)", tag, st);
		return;
	}
	usleep((useconds_t)delay_us);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	close(pfd[0]);
	tap_ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "%s: writer killed", tag);
	st = tq_check(path);
	if (!tap_ok(st == 2 && strstr(tq_out, "corruptions"),
		    "%s: qemu-img check reports corruption (exit %d)", tag, st))
		tap_diag("%s", tq_out);
	tap_ok(qcow2_check_complete(path, err, sizeof(err)) == -EUCLEAN,
	       "%s: qcow2_check_complete says incomplete (%s)", tag, err);
	{
		struct qcow2_image *img = NULL;
		int rc = qcow2_open_existing(path, 0, &img, err, sizeof(err));

		tap_ok(rc == -EUCLEAN && !img, "%s: our open refuses it (%s)", tag, err);
		if (img)
			qcow2_abort_and_unlink(img);
	}
	st = tq_run("qemu-io -f qcow2 -c 'write 0 64k' '%s'", path);
	tap_ok(st != 0 && strstr(tq_out, "corrupt"),
	       "%s: QEMU refuses to open it read/write", tag);
}

static void incomplete_close(void)
{
	struct qcow2_create_opts o = { .virtual_size = 8 << 20 };
	char path[512], raw[512], err[512];
	struct qcow2_image *img;
	uint8_t buf[65536];
	int rc, fd;

	tq_path(path, sizeof(path), "partial.qcow2");
	fd = tq_raw_create(tq_path(raw, sizeof(raw), "partial.raw"), o.virtual_size);
	memset(buf, 0x66, sizeof(buf));
	rc = qcow2_create(path, &o, &img, err, sizeof(err));
	for (int i = 0; !rc && i < 128; i += 5) {
		rc = qcow2_write_cluster(img, (uint64_t)i * 65536, buf, 65536);
		tq_raw_write(fd, (uint64_t)i * 65536, buf, 65536);
	}
	if (!rc)
		rc = qcow2_close(img, false, err, sizeof(err));
	close(fd);
	tap_ok(!rc, "close(complete=false) succeeds (%s)", err);
	tap_ok(qcow2_check_complete(path, err, sizeof(err)) == -EUCLEAN,
	       "an image closed incomplete stays marked (%s)", err);
	tap_ok(tq_check(path) == 0 && tq_compare(path, raw) == 0,
	       "... but its metadata is consistent and it reads what was written");
	tap_ok(tq_run("qemu-img info --output=json '%s'", path) == 0 &&
	       strstr(tq_out, "\"corrupt\": true"),
	       "... and qemu-img info shows corrupt: true");
}

int main(void)
{
	tq_setup("test-qcow2-kill");
	killed_writer("created image, killed at once", false, 0);
	killed_writer("created image, killed later", false, 20000);
	killed_writer("qemu-img image, killed at once", true, 0);
	killed_writer("qemu-img image, killed later", true, 20000);
	incomplete_close();
	tq_cleanup();
	return tap_done();
}
