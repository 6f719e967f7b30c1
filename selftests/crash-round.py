#!/usr/bin/env python3
"""One boot of scripts/crash-test, inside the guest.

  crash-round.py ROUND [--last] [--clean-check]
  crash-round.py clean-save | clean-check

Loads a bsync device over $BSYNC_DISK0 with its metadata on $BSYNC_DISK1.
Round 0 adds the persistent bitmaps. Every later round first verifies the
previous round's crash: each 4 KiB block whose content differs from the
checksums recorded when the bitmaps were last cleared must be dirty in
every bitmap, and no bitmap may be inconsistent. Unless --last, it then
clears the bitmaps, records the checksums, says so in /out/writing-ROUND
and writes at random (several fio jobs, mixed sizes, direct and buffered,
with and without fsync) until the host kills the whole guest.

clean-save and clean-check are a clean reboot: the first writes, disables a
bitmap, saves every bitmap's list line and extents, removes the device and
unloads the module; the second, in the next boot, expects them identical.
Round 0 given --clean-check does that check first, saving a boot.
"""
import os
import subprocess
import sys
import time
import zlib

OUT = os.environ.get("BSYNC_OUT", "/out")
TOP = os.environ["BSYNC_TOP"]
ORIGIN = os.environ["BSYNC_DISK0"]
META = os.environ["BSYNC_DISK1"]
DEV = "crash"
BLOCK = 4096
BITMAPS = [("b4k", "4k"), ("b64k", "64k"), ("b1m", "1m")]


def run(*args, check=True):
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode:
        sys.exit("crash-round: %s failed: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout


def dm(*args):
    return run("dmsetup", "--noudevsync", *args)


def sums(path):
    out = []
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return out
            out += [zlib.crc32(chunk[i:i + BLOCK]) for i in range(0, len(chunk), BLOCK)]


def extents(name):
    runs, frm = [], 0
    while True:
        toks = dm("message", DEV, "0", "extents", name, str(frm), "65536").split()
        for t in toks:
            if ":" in t:
                off, ln = map(int, t.split(":"))
                runs.append((off, off + ln))
            elif t == "end":
                return runs
            else:
                frm = int(t)


def bitmap_fields():
    out = {}
    for line in dm("message", DEV, "0", "list").splitlines():
        f = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
        if line.startswith("bitmap "):
            out[f["name"]] = f
    return out


def covered(runs, off):
    lo, hi = 0, len(runs)
    while lo < hi:
        mid = (lo + hi) // 2
        if runs[mid][1] <= off:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(runs) and runs[lo][0] <= off


def verify(rnd):
    old = [int(x) for x in open(os.path.join(OUT, "sums")).read().split()]
    now = sums("/dev/mapper/" + DEV)
    changed = [i for i, (a, b) in enumerate(zip(old, now)) if a != b]
    fields = bitmap_fields()
    problems = []
    for name, _ in BITMAPS:
        if name not in fields:
            problems.append("bitmap %s is gone" % name)
            continue
        if fields[name]["inconsistent"] != "0":
            problems.append("bitmap %s is inconsistent" % name)
        runs = extents(name)
        missing = [i for i in changed if not covered(runs, i * BLOCK)]
        if missing:
            problems.append("bitmap %s misses %d changed blocks, first at byte %d"
                            % (name, len(missing), missing[0] * BLOCK))
    verdict = "not ok" if problems else "ok"
    dirty = "/".join("%s %d KiB" % (n, int(fields.get(n, {}).get("count", 0)) // 1024)
                     for n, _ in BITMAPS)
    line = "%s - crash %d: %d of %d blocks changed; dirty: %s; %s" % (
        verdict, rnd, len(changed), len(now), dirty,
        "; ".join(problems) or "each changed block is dirty in every bitmap, all consistent")
    with open(os.path.join(OUT, "verify-%d" % rnd), "w") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    print(line)


def snapshot():
    lines = dm("message", DEV, "0", "list").splitlines()
    for name, _ in BITMAPS:
        lines.append("%s: %s" % (name, " ".join("%d:%d" % r for r in extents(name))))
    return "\n".join(lines) + "\n"


def clean(step):
    path = os.path.join(OUT, "clean-snapshot")
    if step == "clean-save":
        for name, gran in BITMAPS:
            dm("message", DEV, "0", "add", name, gran, "persistent")
        subprocess.run(["fio", "--name=clean", "--filename=/dev/mapper/" + DEV,
                        "--rw=randwrite", "--bsrange=512-64k", "--ioengine=libaio",
                        "--direct=1", "--iodepth=8", "--number_ios=400", "--size=128M",
                        "--output=/dev/null"], check=True)
        dm("message", DEV, "0", "disable", "b1m")
        with open(path, "w") as f:
            f.write(snapshot())
        dm("remove", DEV)
        run("rmmod", "dm_bsync")
        return
    want, have = open(path).read(), snapshot()
    verdict = "ok" if want == have else "not ok"
    line = "%s - clean reboot: names, granularities, states, counts and extents identical" % verdict
    if want != have:
        line += "\n# before:\n# " + want.replace("\n", "\n# ") + "\n# after:\n# " + \
            have.replace("\n", "\n# ")
    with open(os.path.join(OUT, "clean-verify"), "w") as f:
        f.write(line + "\n")
    print(line)
    dm("message", DEV, "0", "enable", "b1m")
    dm("remove", DEV)


def create():
    sectors = int(run("blockdev", "--getsz", ORIGIN))
    dm("create", DEV, "--table", "0 %d bsync %s 2 metadata %s" % (sectors, ORIGIN, META))
    dm("mknodes", DEV)


def main():
    step = sys.argv[1]
    run("insmod", "%s/build/kmod/%s/dm-bsync.ko" % (TOP, os.uname().release))
    create()
    if step.startswith("clean-"):
        clean(step)
        return
    if "--clean-check" in sys.argv:
        clean("clean-check")
        create()
    rnd, last = int(step), "--last" in sys.argv
    if rnd == 0:
        for name, gran in BITMAPS:
            if name not in bitmap_fields():
                dm("message", DEV, "0", "add", name, gran, "persistent")
    else:
        verify(rnd - 1)
    if last:
        dm("remove", DEV)
        return
    for name, _ in BITMAPS:
        dm("message", DEV, "0", "clear", name)
    with open(os.path.join(OUT, "sums"), "w") as f:
        f.write("\n".join(map(str, sums("/dev/mapper/" + DEV))) + "\n")
        f.flush()
        os.fsync(f.fileno())
    # Rate-limited, so that a crash leaves most blocks unchanged and a
    # bitmap that is simply full would not pass.
    common = ["--filename=/dev/mapper/" + DEV, "--rw=randwrite", "--time_based",
              "--runtime=120", "--randrepeat=0", "--output=/dev/null", "--rate_iops=150"]
    fio = subprocess.Popen(["fio", "--name=direct", "--ioengine=libaio", "--direct=1",
                            "--iodepth=16", "--bsrange=512-32k", "--numjobs=2"] + common +
                           ["--name=buffered", "--ioengine=psync", "--direct=0",
                            "--bsrange=4k-16k", "--fsync=8"] + common)
    # The host's kill clock starts once writes flow (fio starts slowly here).
    while writes() < 20 and fio.poll() is None:
        time.sleep(0.05)
    with open(os.path.join(OUT, "writing-%d" % rnd), "w") as f:
        f.write("writing\n")
    fio.wait()


def writes():
    return int(dm("status", DEV).split()[6])


if __name__ == "__main__":
    main()
