"""fakesmtp.py — the one scriptable SMTP/LMTP server of the tests, for a
downstream that must misbehave on cue (drop mid-DATA, never answer the dot,
refuse one recipient, per-recipient LMTP replies, no PIPELINING), which a
real Postfix cannot do on demand. The real-Postfix tests stay as the
integration layer; this one lets every queue path run without root.

    fk = FakeSmtp()                          # accepts everything
    fk = FakeSmtp(lmtp=True, rcpt=lambda a: "550 5.1.1 No such user"
                  if a.startswith("dave@") else None)
    fk = FakeSmtp(data="DROP")               # close after 100 bytes of DATA
    fk = FakeSmtp(dot="MUTE")                # never answer the final dot
    ... kasi forwards to 127.0.0.1:fk.port ...
    fk.wait_txns(1); fk.txns[0]["data"]; fk.txns[0]["rcpt"]; fk.commands

Scripts: each of `mail`, `rcpt`, `dot` is None (the default reply), a
reply line ("451 4.3.0 Try later"), "DROP" (close the connection at once),
"MUTE" (read on, never answer, until stop()), or a function of the
command's argument (the address, or for `dot` the transaction) returning
one of those. `data` is the reply to DATA itself, or "DROP" to close after
100 bytes of message. For LMTP, `dot` may return a list: one reply per
accepted recipient. `ehlo` is the list of extension lines offered.

A recorded transaction is a dict: helo, mail (the MAIL argument line),
rcpt (accepted addresses), data (unstuffed bytes, without the final dot),
raw (the same as sent, dot-stuffed), xforward (attribute -> value)."""
import socket
import threading
import time

from fakeserver import FakeServer

EHLO = ["PIPELINING", "SIZE 0", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
        "XFORWARD NAME ADDR PORT PROTO HELO LOGIN"]


class _Drop(Exception):
    pass


class FakeSmtp(FakeServer):
    def __init__(self, lmtp=False, ehlo=None, mail=None, rcpt=None, data=None,
                 dot=None, greeting="220 fake ESMTP", timeout=30):
        self.lmtp, self.ehlo = lmtp, EHLO if ehlo is None else ehlo
        self.script = {"mail": mail, "rcpt": rcpt, "data": data, "dot": dot}
        self.greeting, self.timeout = greeting, timeout
        self.txns = []            # finished transactions, in order
        self.commands = []        # every command line (bytes, stripped)
        self.connections = 0
        self.muted = threading.Event()     # a MUTE script was reached
        self.lock = threading.Lock()
        super().__init__()

    # ------------------------------------------------------------ helpers

    def wait_txns(self, n, timeout=30):
        """True once n transactions were recorded (bounded wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.txns) >= n:
                return True
            time.sleep(0.02)
        return False

    def verbs(self):
        return [c.split(b" ")[0].split(b":")[0].upper() for c in self.commands]

    def _pick(self, what, arg, default):
        s = self.script[what]
        if callable(s):
            s = s(arg)
        return default if s is None else s

    def _say(self, c, reply):
        if reply == "DROP":
            raise _Drop()
        if reply == "MUTE":
            self.muted.set()
            self.stopped.wait(self.timeout)
            raise _Drop()
        for r in reply if isinstance(reply, list) else [reply]:
            c.sendall(r.encode() + b"\r\n")

    # ------------------------------------------------------------ protocol

    def serve(self, c):
        with self.lock:
            self.connections += 1
        c.settimeout(self.timeout)
        f = c.makefile("rb")
        st = {"helo": None, "xforward": {}}
        try:
            c.sendall(self.greeting.encode() + b"\r\n")
            while self._command(c, f, st):
                pass
        except (OSError, _Drop):
            pass
        finally:
            c.close()

    def _command(self, c, f, st):
        line = f.readline()
        if not line:
            return False
        cmd = line.rstrip(b"\r\n")
        with self.lock:
            self.commands.append(cmd)
        verb = cmd.split(b" ")[0].split(b":")[0].upper()
        arg = cmd[len(verb):].strip().decode("utf-8", "replace")
        if verb in (b"EHLO", b"LHLO") or (verb == b"HELO" and not self.lmtp):
            st["helo"] = arg
            lines = ["fake"] + (self.ehlo if verb != b"HELO" else [])
            self._say(c, ["250%s%s" % ("-" if i < len(lines) - 1 else " ", l)
                          for i, l in enumerate(lines)])
        elif verb == b"XFORWARD":
            for kv in arg.split():
                k, _, v = kv.partition("=")
                st["xforward"][k.upper()] = v
            self._say(c, "250 2.0.0 Ok")
        elif verb == b"MAIL":
            st["txn"] = {"helo": st["helo"], "mail": arg, "rcpt": [],
                         "xforward": dict(st["xforward"])}
            self._say(c, self._pick("mail", arg, "250 2.1.0 Ok"))
        elif verb == b"RCPT":
            addr = arg.partition(":")[2].strip().split(" ")[0].strip("<>")
            reply = self._pick("rcpt", addr, "250 2.1.5 Ok")
            if isinstance(reply, str) and reply[:1] == "2" and "txn" in st:
                st["txn"]["rcpt"].append(addr)
            self._say(c, reply)
        elif verb == b"DATA":
            self._data(c, f, st)
        elif verb == b"RSET":
            st.pop("txn", None)
            self._say(c, "250 2.0.0 Ok")
        elif verb == b"QUIT":
            self._say(c, "221 2.0.0 Bye")
            return False
        else:
            self._say(c, "250 2.0.0 Ok")
        return True

    def _data(self, c, f, st):
        t = st.pop("txn", None)
        reply = self._pick("data", t, "354 End data with <CR><LF>.<CR><LF>")
        if reply == "DROP":
            c.sendall(b"354 go\r\n")
            f.read(100)
            raise _Drop()
        self._say(c, reply)
        if not reply.startswith("354"):
            return
        raw = b""
        while True:
            line = f.readline()
            if not line:
                raise _Drop()
            if line == b".\r\n":
                break
            raw += line
        t = t or {"helo": st["helo"], "mail": None, "rcpt": [], "xforward": {}}
        t["raw"] = raw
        t["data"] = b"".join(l[1:] if l.startswith(b".") else l
                             for l in raw.splitlines(keepends=True))
        n = len(self.txns) + 1
        default = ["250 2.1.5 Ok: delivered as FAKE%d" % n] * len(t["rcpt"]) \
            if self.lmtp else "250 2.0.0 Ok: queued as FAKE%d" % n
        reply = self._pick("dot", t, default)
        if reply not in ("DROP", "MUTE"):
            with self.lock:
                self.txns.append(t)
        self._say(c, reply)


# ------------------------------------------------------------ lockstep mode

class ScriptedSmtp:
    """Lockstep mode: connections are handled one after another in a
    thread by script(conn), which reads each line the client sends
    (conn.line(), conn.data()) and answers (conn.send()), so a test can
    assert the exact order of the client's commands. Failed assertions
    land in .errors; every line read in .log."""

    def __init__(self, script, conns=1):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(20)
        self.port = self.sock.getsockname()[1]
        self.log = []
        self.errors = []
        self.t = threading.Thread(target=self._run, args=(script, conns), daemon=True)
        self.t.start()

    def _run(self, script, conns):
        for _ in range(conns):
            try:
                s, _a = self.sock.accept()
            except OSError:
                return
            c = ScriptConn(s, self.log)
            try:
                script(c)
            except Exception as e:  # noqa: BLE001
                self.errors.append(repr(e))
            finally:
                c.close()

    def close(self):
        self.t.join(timeout=20)
        self.sock.close()


class ScriptConn:
    def __init__(self, s, log):
        self.s = s
        self.s.settimeout(15)
        self.buf = b""
        self.log = log

    def send(self, text):
        self.s.sendall(text.encode() if isinstance(text, str) else text)

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("client closed")
            self.buf += d
        l, _, self.buf = self.buf.partition(b"\r\n")
        self.log.append(l.decode("utf-8", "replace"))
        return l.decode("utf-8", "replace")

    def data(self):
        """Read up to the final dot; returns the unstuffed message."""
        lines = []
        while True:
            l = self.line()
            if l == ".":
                break
            lines.append(l[1:] if l.startswith(".") else l)
        return ("\r\n".join(lines) + "\r\n").encode() if lines else b""

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def greet(c, exts, lmtp=False):
    c.send("220 fake ESMTP\r\n")
    l = c.line()
    assert l.upper().startswith("LHLO" if lmtp else "EHLO"), l
    c.send("250-fake\r\n" + "".join("250-%s\r\n" % e for e in exts[:-1])
           + "250 %s\r\n" % exts[-1])


def smtp_txn(c, nrcpt, data_reply="250 2.0.0 Ok: queued as FAKE1"):
    assert c.line().startswith("MAIL FROM:")
    c.send("250 2.1.0 Ok\r\n")
    for _ in range(nrcpt):
        assert c.line().startswith("RCPT TO:")
        c.send("250 2.1.5 Ok\r\n")
    assert c.line() == "DATA"
    c.send("354 go\r\n")
    got = c.data()
    c.send(data_reply + "\r\n")
    return got
