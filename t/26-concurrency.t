#!/usr/bin/env python3
"""Concurrency and volume: 200 sessions at once, each sending one message
(all spooled with the right envelope and bytes), and one 50 MB message
spooled with its exact size and SHA-256."""
import base64
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

N = 200


def message(i):
    return (b"From: sender%d@client.test\r\nSubject: message %d\r\n\r\n" % (i, i)
            + (b"line %d of message %d\r\n" % (1, i)) * (1 + i % 7))


def client(port, i, barrier, results):
    """One session; stores (ok, detail) in results[i]. Never raises."""
    try:
        c = Raw(port, timeout=30)
        try:
            barrier.wait(timeout=scaled(20))
        except threading.BrokenBarrierError:
            pass
        steps = [c.read_reply(30)]
        c.send("EHLO c%d.client.test\r\n" % i)
        steps.append(c.read_reply(30))
        c.send("MAIL FROM:<sender%d@client.test>\r\nRCPT TO:<rcpt%d@example.test>\r\n"
               "RCPT TO:<copy%d@example.test>\r\nDATA\r\n" % (i, i, i))
        steps += c.read_replies(4, 30)
        c.send(message(i) + b".\r\n")
        steps.append(c.read_reply(30))
        c.send("QUIT\r\n")
        steps.append(c.read_reply(30))
        c.close()
        codes = [s[0] for s in steps]
        results[i] = (codes == [220, 250, 250, 250, 250, 354, 250, 221],
                      (codes, queued_id(steps[6][1]), c.error))
    except Exception as e:  # report, don't kill the thread silently
        results[i] = (False, repr(e))


with Kasi({"limits": {"max_connections": 1000, "max_connections_per_ip": 0,
                      "max_message_size": "60M"}}) as k:
    results = [None] * N
    barrier = threading.Barrier(N)
    threads = [threading.Thread(target=client, args=(k.port, i, barrier, results), daemon=True)
               for i in range(N)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1, scaled(90) - (time.monotonic() - t0)))
    alive = sum(t.is_alive() for t in threads)
    is_(alive, 0, "all %d client threads finished" % N)
    bad = [(i, r) for i, r in enumerate(results) if not (r and r[0])]
    ok(not bad, "all %d concurrent sessions got the expected replies" % N,
       *["session %d: %r" % x for x in bad[:10]])
    diag("%d sessions in %.2f s" % (N, time.monotonic() - t0))

    msgs = k.spool()
    is_(len(msgs), N, "%d messages spooled" % N)
    is_(len(set(m.id for m in msgs)), len(msgs), "message ids are unique")
    ids = {r[1][1]: i for i, r in enumerate(results) if r and r[0]}
    wrong = []
    for m in msgs:
        i = ids.get(m.id)
        want_env = ("sender%d@client.test" % i, ["rcpt%d@example.test" % i, "copy%d@example.test" % i],
                    "c%d.client.test" % i)
        got_env = (m.env.get("mail_from"), m.env.get("rcpt_to"), m.env.get("helo"))
        if i is None or got_env != want_env or m.body() != message(i) \
                or m.env.get("size") != len(m.eml):
            wrong.append((m.id, i, got_env, "env ok" if got_env == want_env else "env differs",
                          "bytes ok" if i is not None and m.body() == message(i) else "bytes differ",
                          m.env.get("size"), len(m.eml)))
    ok(not wrong, "every spooled message has its own envelope, helo and bytes",
       *["%r" % (w,) for w in wrong[:10]])

    # one 50 MB message
    head = b"From: big@client.test\r\nSubject: 50 MB\r\n\r\n"
    line = 76
    per = line + 2
    full, rest = divmod(50_000_000 - len(head), per)
    raw = base64.b64encode(os.urandom(full * line * 3 // 4 + 3))[:full * line]
    body = head + b"".join(raw[j:j + line] + b"\r\n" for j in range(0, full * line, line))
    body += b"x" * (rest - 2) + b"\r\n"
    is_(len(body), 50_000_000, "generated a 50,000,000-byte message")
    want_sha = sha256(body)
    t0 = time.monotonic()
    with Raw(k.port, ehlo="big.client.test", timeout=60) as c:
        c.send("MAIL FROM:<big@client.test> SIZE=%d\r\nRCPT TO:<big@example.test>\r\nDATA\r\n"
               % len(body))
        rs = c.read_replies(3, 30)
        is_([x for x, _ in rs], [250, 250, 354], "50 MB: MAIL SIZE=, RCPT, DATA")
        view = memoryview(body)
        for j in range(0, len(body), 1 << 20):
            if not c.send(view[j:j + (1 << 20)].tobytes()):
                break
        c.send(".\r\n")
        code, lines = c.read_reply(timeout=120)
        is_(code, 250, "50 MB message accepted")
        mid = queued_id(lines)
        c.cmd("QUIT")
    diag("50 MB in %.2f s" % (time.monotonic() - t0))
    path = os.path.join(k.spool_dir, "%s.eml" % mid)
    if ok(mid and os.path.exists(path), "50 MB message spooled"):
        with open(path, "rb") as f:
            eml = f.read()
        rec, got = strip_received(eml)
        is_(len(got), len(body), "50 MB: exact size")
        is_(sha256(got), want_sha, "50 MB: exact sha256")
        env = k.spool_by_id(mid).env
        is_(env.get("size"), len(eml), "50 MB: env size")
        del eml, got

done()
