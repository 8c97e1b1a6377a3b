#!/usr/bin/env python3
"""queue/lmtp against a scripted LMTP server (RFC 2033): LHLO, one reply
per recipient after the final dot; every recipient 2xx -> 250; a mixed
outcome -> 250 with each refused recipient logged (a 4xx would make the
client resend to the delivered ones too); none delivered -> 451 when any
got 4xx, else the 5xx; the message bytes arrive dot-stuffed intact."""
import os
import re
import socket
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from kasitest import *  # noqa: E402,F401,F403
from fakeserver import FakeServer  # noqa: E402

MSG = b"Subject: lmtp\r\n\r\nhello\r\n.dot\r\n"
FATE = {"bob": b"250 2.1.5 Saved", "carol": b"452 4.2.2 Mailbox full",
        "dave": b"550 5.1.1 No such user", "erin": b"250 2.1.5 Saved"}


class Lmtp(FakeServer):
    def __init__(self):
        self.seen = []
        self.cmds = []
        super().__init__(backlog=8)

    def serve(self, c):
        c.settimeout(20)
        f = c.makefile("rb")
        try:
            c.sendall(b"220 lmtp ready\r\n")
            rcpts = []
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.strip()
                self.cmds.append(cmd.split(b" ")[0].upper())
                u = cmd.upper()
                if u.startswith(b"LHLO"):
                    c.sendall(b"250-lmtp\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif u.startswith(b"MAIL"):
                    rcpts = []
                    c.sendall(b"250 2.1.0 Ok\r\n")
                elif u.startswith(b"RCPT"):
                    rcpts.append(cmd[8:].strip(b"<>").decode().split("@")[0])
                    c.sendall(b"250 2.1.5 Ok\r\n")
                elif u == b"DATA":
                    c.sendall(b"354 go\r\n")
                    data = b""
                    while True:
                        line = f.readline()
                        if not line or line == b".\r\n":
                            break
                        data += line
                    for r in rcpts:
                        self.seen.append((r, data))
                        c.sendall(FATE[r] + b"\r\n")
                elif u == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 Ok\r\n")
        except OSError:
            pass
        finally:
            c.close()



lm = Lmtp()
with Kasi(files={"config/plugins": "queue/lmtp\n",
                 "config/queue/lmtp.yaml": "port: %d\n" % lm.port}) as k:
    def send(rcpts):
        return send_message(k.port, "alice@client.test", ["%s@x.test" % r for r in rcpts], MSG)

    code, lines = send(["bob", "erin"])
    is_(code, 250, "all delivered: 250")
    ok(b"LHLO" in lm.cmds and b"EHLO" not in lm.cmds, "spoke LHLO")
    got = [d for r, d in lm.seen if r == "bob"]
    ok(got and got[0].endswith(b"hello\r\n..dot\r\n") and b"Subject: lmtp\r\n" in got[0],
       "bytes arrive dot-stuffed, intact", got)

    code, lines = send(["bob", "carol", "dave"])
    is_(code, 250, "mixed (250/452/550): 250, bob has it")
    ok(k.wait_log(r"refused <carol@x\.test>: 452 4\.2\.2 Mailbox full \(not delivered\)"),
       "mixed: the 4xx recipient logged loudly")
    ok(k.wait_log(r"refused <dave@x\.test>: 550 5\.1\.1 No such user"), "mixed: the 5xx recipient logged")

    code, lines = send(["carol", "dave"])
    is_(code, 451, "none delivered, one 4xx: 451")

    code, lines = send(["dave"])
    is_(code, 550, "none delivered, all 5xx: 550")
    like(" ".join(lines), r"^5\.1\.1 No such user", "the downstream's text")
lm.stop()
done()
