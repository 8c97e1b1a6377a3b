"""fakespamd.py — a scripted spamd on loopback for the spamassassin
plugin's error paths, which a real spamd cannot produce on demand (a
garbled status line, a verdict without a Spam: line, a spamd that reads
and never answers, one that closes at once). The real-spamd test
(t/63-spamassassin.t) stays as the integration layer.

    sd = FakeSpamd(score=12.5)             # answers "Spam: True ; 12.5 / 5.0"
    sd = FakeSpamd(mode="garbled")         # "HTTP/1.0 500 oops"
    ... sd.requests[0] == {"verb":, "headers": {...}, "body": b"..."}

mode: "ok" (a verdict from score / required), "garbled", "noverdict",
"error" (SPAMD/1.1 76 EX_PROTOCOL), "mute" (reads the request, never
answers until stop()), "close" (closes right after accepting)."""
from fakeserver import FakeServer


class FakeSpamd(FakeServer):
    def __init__(self, mode="ok", score=1.0, required=5.0, timeout=30):
        self.mode, self.score, self.required = mode, score, required
        self.timeout = timeout
        self.requests = []
        super().__init__()

    def _request(self, f):
        head = f.readline().rstrip(b"\r\n").decode("latin-1")
        headers = {}
        while True:
            line = f.readline()
            if not line or line in (b"\r\n", b"\n"):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        body = f.read(n) if n else b""
        return {"verb": head.split(" ")[0], "line": head, "headers": headers, "body": body}

    def _answer(self):
        if self.mode == "garbled":
            return b"HTTP/1.0 500 oops\r\n\r\n"
        if self.mode == "error":
            return b"SPAMD/1.1 76 EX_PROTOCOL\r\n\r\n"
        if self.mode == "noverdict":
            return b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n"
        spam = "True" if self.score >= self.required else "False"
        return ("SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: %s ; %.1f / %.1f\r\n\r\n"
                "GTUBE,FAKE" % (spam, self.score, self.required)).encode()

    def serve(self, c):
        c.settimeout(self.timeout)
        try:
            if self.mode == "close":
                return
            f = c.makefile("rb")
            req = self._request(f)
            self.requests.append(req)
            if self.mode == "mute":
                self.stopped.wait(self.timeout)
                return
            c.sendall(self._answer())
        except OSError:
            pass
        finally:
            c.close()
