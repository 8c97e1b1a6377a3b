#!/usr/bin/env python3
"""queue/spool waits for the disk off the event loop (msg/spool_io.c).

Runs the test build of kasi (build/kasi-test), in which the environment
variable KASI_TEST_SPOOL_STALL names a file: while it exists, the first
spool write to start is held there, between its .eml and its .env (a
stalled disk), and NAME.waiting appears; while the file
KASI_TEST_SPOOL_SYNC_FAIL names exists, every sync of the spool fails
with EIO; KASI_TEST_SPOOL_NAMED makes the files under temporary names,
as on a file system without O_TMPFILE. Each part runs both ways: files
made unnamed (the default where the file system can) and named.
Checked by order and progress, never by time:
  - while one session's write is stalled, a new session gets its banner
    and EHLO answered, and a whole second message is spooled (250, both
    files there): the stall delays only the transaction waiting on it;
  - the stalled transaction has no reply and no final files until the
    disk is released; then 250, and its exact bytes are in the spool;
  - while it is held, its written .eml has no name in the spool directory
    (unnamed) or only its temporary one (named);
  - the worker killed while a write is held: no file of that message is
    in the spool, not even a temporary one (unnamed); the new worker
    spools the next message;
  - a client that disconnects while its write is stalled: the server
    carries on, and the message is still finished on disk;
  - at start, temporary files older than an hour (a crash's, named mode)
    are removed and logged; newer ones and other files stay;
  - a spool directory that vanished: 451 4.3.0, the error logged, no 250;
  - a sync that fails: 451 4.3.0, no file of that message left (neither
    temporary nor final), the error logged; once syncs work again the
    next message is spooled.
"""
import os
import select
import signal
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kasitest  # noqa: E402
from kasitest import *  # noqa: E402,F401,F403

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.environ.get("KASI_UNIT") or os.path.join(REPO, "build", "t")
kasitest.KASI_BIN = os.path.join(os.path.dirname(UNIT), "kasi-test")  # beside kasi (finds lua/ alike)
FILES = {"config/plugins": "queue/spool\n"}


def message(subject):
    return ("From: alice@client.test\r\nTo: bob@test.example\r\n"
            "Subject: %s\r\n\r\nline one\r\n.dotted\r\n" % subject).encode()


def start_data(r, subject):
    """EHLO, MAIL, RCPT, DATA and the message; the reply is not read."""
    r.expect(250, name="EHLO " + subject)
    r.cmd("MAIL FROM:<alice@client.test>")
    r.cmd("RCPT TO:<bob@test.example>")
    code, _ = r.cmd("DATA")
    is_(code, 354, "DATA accepted (%s)" % subject)
    r.send(dot_stuff(message(subject)) + b".\r\n")


def wait_file(path, timeout=10):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.01)
    return False


def pending(r):
    """True when r's server has sent nothing unread (no wait)."""
    return not r.buf and not select.select([r.sock], [], [], 0)[0]


def by_subject(k, subject):
    return [m for m in k.spool() if b"Subject: " + subject.encode() in m.eml]


if not os.access(kasitest.KASI_BIN, os.X_OK):
    ok(False, "test build present: %s (make unit)" % kasitest.KASI_BIN)
    done()


def dot_tmp(k):
    """Temporary files in k's spool directory."""
    return [n for n in os.listdir(k.spool_dir) if n.endswith(".tmp")]


def stalled_kasi(mode, name):
    """A kasi whose first spool write will be held: (kasi, stall file)."""
    k = Kasi(files=FILES, start=False)
    stall = os.path.join(k.tmp, name)
    os.environ["KASI_TEST_SPOOL_STALL"] = stall
    if mode == "named":
        os.environ["KASI_TEST_SPOOL_NAMED"] = "1"
    else:
        os.environ.pop("KASI_TEST_SPOOL_NAMED", None)
    open(stall, "w").close()
    k.start()
    return k, stall


def held_session(k, stall, subject, what):
    """A session whose message is sent while its spool write is held."""
    a = Raw(k.port, banner=True)
    a.send("EHLO a.client.test\r\n")
    start_data(a, subject)
    ok(wait_file(stall + ".waiting"), what)
    return a


for MODE in ("unnamed", "named"):
    diag("files made %s" % MODE)
    # ---- a stalled write delays only its own transaction -------------------
    k, stall = stalled_kasi(MODE, "stall")
    with k:
        a = held_session(k, stall, "stalled", "the first write is held by the disk")

        b = Raw(k.port, banner=True)            # the banner came: the loop runs
        b.send("EHLO b.client.test\r\n")
        start_data(b, "second")
        code, lines = b.read_reply(timeout=30)
        is_(code, 250, "a second session's message is spooled meanwhile")
        is_(len(by_subject(k, "second")), 1, "its files are in the spool")
        ok(pending(a), "the stalled transaction has no reply yet")
        is_(by_subject(k, "stalled"), [], "and no final files (250 waits for the disk)")
        is_(len(dot_tmp(k)), 1 if MODE == "named" else 0,
            "its written .eml has %s" % ("its temporary name" if MODE == "named"
                                         else "no name in the directory"))

        os.unlink(stall)                        # the disk comes back
        code, lines = a.read_reply(timeout=30)
        is_(code, 250, "the stalled transaction gets its 250 once on disk")
        got = by_subject(k, "stalled")
        is_(len(got), 1, "its message is in the spool")
        if got:
            is_(strip_received(got[0].eml)[1], message("stalled"), "exact bytes")
            is_(got[0].id, queued_id(lines), "the 250 names the spooled id")
        a.cmd("QUIT")
        b.cmd("QUIT")

    # ---- the client goes away while its write is stalled --------------------
    k, stall = stalled_kasi(MODE, "stall")
    with k:
        a = held_session(k, stall, "orphan", "the write is held")
        a.sock.close()
        ok(k.wait_log(r"\] disconnect .*result=lost", timeout=scaled(10)),
           "the session ends while its write is pending")
        os.unlink(stall)
        with Raw(k.port, banner=True) as r:
            is_(r.cmd("EHLO c.client.test")[0], 250, "the server carries on")
        deadline = time.monotonic() + scaled(10)
        while not by_subject(k, "orphan") and time.monotonic() < deadline:
            time.sleep(0.02)
        is_(len(by_subject(k, "orphan")), 1,
            "the abandoned write is still finished (a retry may duplicate, never lose)")

    # ---- the worker dies while a write is held ----------------------------
    k, stall = stalled_kasi(MODE, "stall")
    with k:
        pids = k.wait_workers(1)
        a = held_session(k, stall, "crashed", "a write is held")
        os.kill(pids[0], signal.SIGKILL)
        ok(k.wait_workers(1, exclude=pids), "a new worker serves")
        a.close()
        os.unlink(stall)
        with Raw(k.port, banner=True) as r:
            r.send("EHLO g.client.test\r\n")
            start_data(r, "recovered")
            r.expect(250, name="the next message is spooled")
        is_(by_subject(k, "crashed"), [], "the killed write is no message")
        if MODE == "unnamed":
            is_(dot_tmp(k), [], "and left no file behind")
        else:
            is_(len(dot_tmp(k)), 1, "its temporary .eml stays behind (named)")

# ---- at start, a crash's temporary files are removed ---------------------
os.environ.pop("KASI_TEST_SPOOL_STALL", None)
with Kasi(files=FILES, start=False) as k:
    old = time.time() - 2 * 3600
    names = {".A1.1.eml.tmp": old, ".A1.1.env.tmp": old, ".probe.7.7.tmp": old,
             ".B2.1.eml.tmp": None, ".notes.tmp": old, "C3.1.eml": old}
    for name, mtime in names.items():
        path = os.path.join(k.spool_dir, name)
        open(path, "w").close()
        if mtime:
            os.utime(path, (mtime, mtime))
    k.start()
    ok(k.wait_log(r"removed 3 temporary files of writes a crash cut short"),
       "the three old temporary files are removed, and it is logged")
    is_(sorted(n for n in os.listdir(k.spool_dir) if n != ".gen"),
        [".B2.1.eml.tmp", ".notes.tmp", "C3.1.eml"],
        "a newer one (a write that may still run) and other files stay")

# ---- the spool directory is gone: 451, not 250 --------------------------
os.environ.pop("KASI_TEST_SPOOL_STALL", None)
os.environ.pop("KASI_TEST_SPOOL_NAMED", None)
with Kasi(files=FILES) as k:
    shutil.rmtree(k.spool_dir)
    with Raw(k.port, banner=True) as r:
        r.send("EHLO d.client.test\r\n")
        start_data(r, "nowhere")
        r.expect(451, "4.3.0", "a failed spool write is a 451")
    ok(k.wait_log(r"spool write failed: spool .*No such file"), "the reason is logged")

for MODE in ("unnamed", "named"):
    if MODE == "named":
        os.environ["KASI_TEST_SPOOL_NAMED"] = "1"
    else:
        os.environ.pop("KASI_TEST_SPOOL_NAMED", None)
    # ---- the disk fails a sync: 451, and nothing of the message is left -----
    with Kasi(files=FILES, start=False) as k:
        fail = os.path.join(k.tmp, "syncfail")
        os.environ["KASI_TEST_SPOOL_SYNC_FAIL"] = fail
        open(fail, "w").close()
        k.start()
        with Raw(k.port, banner=True) as r:
            r.send("EHLO e.client.test\r\n")
            start_data(r, "lostwrite")
            r.expect(451, "4.3.0", "a failed sync is a 451")
        ok(k.wait_log(r"spool write failed: .*Input/output error"), "the reason is logged")
        is_(sorted(f for f in os.listdir(k.spool_dir) if f.endswith((".eml", ".env", ".tmp"))), [],
            "no file of that message is left")
        os.unlink(fail)
        with Raw(k.port, banner=True) as r:
            r.send("EHLO f.client.test\r\n")
            start_data(r, "afterwards")
            r.expect(250, name="once syncs work again, the next message is spooled")
        is_([m.id for m in k.spool()], [m.id for m in by_subject(k, "afterwards")],
            "and only that one")
        os.environ.pop("KASI_TEST_SPOOL_SYNC_FAIL", None)

done()
