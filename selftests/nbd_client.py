#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""python3-libnbd client checks for test_bsyncd_nbd.sh.

  nbd_client.py SOCKET EXPORT BITMAP EXPECTED-RAW DIRTY-LIST OUT-RAW

Prints one line per check, "PASS desc" or "FAIL desc", for the shell test to
turn into TAP.  EXPECTED-RAW is the device as it was at the export's instant;
DIRTY-LIST the bitmap's dirty runs there, "offset length" per line.
  - an incremental pull as virtnbdbackup does it: block_status with both
    contexts, pread of the dirty extents only, into OUT-RAW (a copy of the
    previous full); then it must equal EXPECTED-RAW;
  - writes, trims and zeroes fail with EPERM; out-of-range reads with EINVAL;
  - four clients at once read the whole export and get the instant;
  - hostile input on raw sockets (bad magic, a 4 GiB option, unknown options,
    a half-closed socket, 200 idle connections), after which a client is
    still served.
"""
import errno
import os
import socket
import struct
import sys
import threading
import time

import nbd

sock, export, bitmap, expected_path, dirty_path, out_path = sys.argv[1:7]
ctx = "qemu:dirty-bitmap:" + bitmap
expected = open(expected_path, "rb").read()
size = len(expected)
dirty_want = []
for line in open(dirty_path):
    if line.strip():
        o, n = line.split()
        dirty_want.append((int(o), int(n)))


def check(cond, desc):
    print(("PASS " if cond else "FAIL ") + desc, flush=True)


def connect(contexts=(ctx, "base:allocation")):
    h = nbd.NBD()
    h.set_export_name(export)
    for c in contexts:
        h.add_meta_context(c)
    h.connect_unix(sock)
    return h


# an incremental pull, guided by the bitmap context
h = connect()
check(h.can_meta_context(ctx) and h.can_meta_context("base:allocation"),
      "both contexts negotiated")
check(h.is_read_only() and h.can_multi_conn(), "read-only export, multi-conn")
check(h.get_size() == size, "size %d" % h.get_size())
dirty = []
off = 0
while off < size:
    got = {}

    def cb(metacontext, offset, entries, err, got=got):
        got[metacontext] = (offset, entries)
        return 0
    h.block_status(min(size - off, 32 << 20), off, cb)
    _, ent = got[ctx]
    pos = off
    for i in range(0, len(ent), 2):
        if ent[i + 1] not in (0, 1):
            check(False, "dirty-bitmap status %d not 0 or 1" % ent[i + 1])
        if ent[i + 1] & 1:
            if dirty and dirty[-1][0] + dirty[-1][1] == pos:
                dirty[-1] = (dirty[-1][0], dirty[-1][1] + ent[i])
            else:
                dirty.append((pos, ent[i]))
        pos += ent[i]
    off = pos
check(dirty == dirty_want, "block_status walk finds the dirty runs %s (want %s)" % (dirty, dirty_want))
with open(out_path, "r+b") as f:
    for o, n in dirty:
        done = 0
        while done < n:
            k = min(n - done, 4 << 20)
            f.seek(o + done)
            f.write(h.pread(k, o + done))
            done += k
check(open(out_path, "rb").read() == expected,
      "previous full + the dirty extents read = the device at the instant")

# what a read-only export refuses
for name, fn in (("pwrite", lambda: h.pwrite(b"x" * 4096, 0)),
                 ("trim", lambda: h.trim(4096, 0)),
                 ("zero", lambda: h.zero(4096, 0))):
    try:
        fn()
        check(False, name + " succeeded on a read-only export")
    except nbd.Error as e:
        # libnbd refuses these itself on a read-only export (EPERM/EINVAL)
        check(e.errnum in (errno.EPERM, errno.EINVAL, errno.EROFS), "%s refused: %s" % (name, e))
try:
    h.pread(4096, size - 512)
    check(False, "a read past the end succeeded")
except nbd.Error as e:
    check(True, "a read past the end fails: %s" % e.string.splitlines()[0])
h.shutdown()

# the server's own answer to a write (libnbd would refuse it client-side)
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sock)


def recvn(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


IHAVEOPT = 0x49484156454F5054
recvn(s, 18)
s.sendall(struct.pack(">I", 3))
name = export.encode()
s.sendall(struct.pack(">QII", IHAVEOPT, 7, 6 + len(name)) + struct.pack(">I", len(name)) + name +
          struct.pack(">H", 0))
while True:
    _, opt, typ, ln = struct.unpack(">QIII", recvn(s, 20))
    recvn(s, ln)
    if typ == 1 or typ & 0x80000000:
        break
check(typ == 1, "raw GO without structured replies")
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 77, 0, 512) + b"\0" * 512)
magic, err, cookie = struct.unpack(">IIQ", recvn(s, 16))
check(magic == 0x67446698 and err == 1 and cookie == 77, "WRITE gets EPERM from the server")
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 4, 78, 0, 512))
magic, err, cookie = struct.unpack(">IIQ", recvn(s, 16))
check(err == 1 and cookie == 78, "TRIM gets EPERM from the server")
s.close()

# several clients at once
results = []


def reader(i):
    c = connect(contexts=())
    buf = bytearray()
    off = 0
    while off < size:
        k = min(size - off, 2 << 20)
        buf += c.pread(k, off)
        off += k
    c.shutdown()
    results.append(bytes(buf) == expected)


ts = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
for t in ts:
    t.start()
for t in ts:
    t.join()
check(len(results) == 3 and all(results), "3 clients at once read the instant")


# hostile input on raw sockets
def raw():
    r = socket.socket(socket.AF_UNIX)
    r.settimeout(15)
    r.connect(sock)
    recvn(r, 18)
    return r


def is_closed(r):
    try:
        while r.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


r = raw()
r.sendall(struct.pack(">I", 3) + b"BADMAGIC" + struct.pack(">II", 7, 0))
check(is_closed(r), "bad option magic: closed")
r = raw()
r.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 7, 0xFFFFFFF0))
check(is_closed(r), "a 4 GiB option: closed")
r = raw()
r.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 4242, 3) + b"abc")
_, _, typ, ln = struct.unpack(">QIII", recvn(r, 20))
recvn(r, ln)
check(typ == 0x80000001, "unknown option: NBD_REP_ERR_UNSUP, and the handshake goes on")
r.sendall(struct.pack(">QII", IHAVEOPT, 2, 0))
check(is_closed(r), "then ABORT closes")
r = raw()
r.sendall(struct.pack(">I", 3) + b"IHAV")
r.shutdown(socket.SHUT_WR)
check(is_closed(r), "half-closed in the handshake: closed")
idle = []
for i in range(200):
    try:
        c = socket.socket(socket.AF_UNIX)
        c.connect(sock)
        idle.append(c)
    except OSError:
        break
time.sleep(2)   # let the server take them off the backlog
c = connect()
check(c.pread(65536, 0) == expected[:65536], "a client is served beside %d idle connections" % len(idle))
c.shutdown()
for c in idle:
    c.close()
c = connect()
check(c.pread(1 << 20, size - (1 << 20)) == expected[-(1 << 20):],
      "a client is served after the hostile ones")
c.shutdown()
