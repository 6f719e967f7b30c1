#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Differential check of bsyncd's NBD export against qemu-storage-daemon.

  nbd_diff.py BSYNCD-SOCKET QSD-SOCKET EXPORT BITMAP N

Both servers export the same data with the same bitmap (for QEMU, carried by
a qcow2).  N random BLOCK_STATUS queries on qemu:dirty-bitmap:BITMAP (with
and without REQ_ONE, aligned and not) and N/4 random READs must give the
same answers.  Prints "PASS desc" or "FAIL desc" lines.
"""
import random
import sys

import nbd

ours, qsd, export, bitmap, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ctx = "qemu:dirty-bitmap:" + bitmap


def connect(sock):
    h = nbd.NBD()
    h.set_export_name(export)
    h.add_meta_context(ctx)
    h.connect_unix(sock)
    return h


a, b = connect(ours), connect(qsd)
size = a.get_size()
print(("PASS" if size == b.get_size() else "FAIL") + " same size %d" % size, flush=True)


def status(h, length, off, flags):
    got = []

    def cb(metacontext, offset, entries, err):
        if metacontext == ctx:
            got.extend(entries)
        return 0
    h.block_status(length, off, cb, flags=flags)
    return got


rnd = random.Random(257)
diffs = []
for i in range(n):
    if rnd.random() < 0.5:
        off = rnd.randrange(0, size // 512) * 512
        length = rnd.randrange(1, (size - off) // 512 + 1) * 512
    else:
        off = rnd.randrange(0, size)
        length = rnd.randrange(1, size - off + 1)
    flags = nbd.CMD_FLAG_REQ_ONE if rnd.random() < 0.5 else 0
    x, y = status(a, length, off, flags), status(b, length, off, flags)
    if x != y:
        diffs.append((off, length, flags, x[:6], y[:6]))
print(("PASS" if not diffs else "FAIL") +
      " %d random BLOCK_STATUS queries answer as QEMU's %s" % (n, diffs[:2] if diffs else ""),
      flush=True)
bad = 0
for i in range(n // 4):
    off = rnd.randrange(0, size)
    length = rnd.randrange(1, min(size - off, 128 << 10) + 1)
    if a.pread(length, off) != b.pread(length, off):
        bad += 1
print(("PASS" if not bad else "FAIL") + " %d random READs answer as QEMU's (%d differ)" % (n // 4, bad),
      flush=True)
a.shutdown()
b.shutdown()
