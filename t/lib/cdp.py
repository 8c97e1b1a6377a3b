"""cdp — a page kept open in headless Chromium, read while it runs, over
the DevTools protocol (a WebSocket on loopback). Standard library only:
the few WebSocket frames needed (masked text out, text in) are written
here.

    with Page("http://127.0.0.1:8025/", tmpdir) as p:
        p.evaluate("document.body.dataset.polls")   # -> the value

Every wait is bounded: the browser must say where it listens within
scaled(30) s, each answer must come within scaled(10) s.
"""

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request

from kasitest import scaled, stop_process


class CdpError(Exception):
    pass


class _WebSocket:
    """A client WebSocket (RFC 6455) on a plain TCP socket."""

    def __init__(self, url, timeout):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if not m:
            raise CdpError("not a ws:// address: %r" % url)
        self.sock = socket.create_connection((m.group(1), int(m.group(2))), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n"
                           % (m.group(3), m.group(1), m.group(2), key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise CdpError("no WebSocket upgrade: %r" % head[:200])

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise CdpError("the browser closed the connection")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text):
        data = text.encode()
        n = len(data)
        head = bytes([0x81])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        """The next text message (fragments joined; control frames skipped)."""
        parts = []
        while True:
            b0, b1 = self._take(2)
            n = b1 & 0x7f
            if n == 126:
                n = struct.unpack(">H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._take(8))[0]
            mask = self._take(4) if b1 & 0x80 else None
            data = self._take(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            op = b0 & 0x0f
            if op == 8:
                raise CdpError("the browser closed the WebSocket")
            if op in (0, 1, 2):
                parts.append(data)
                if b0 & 0x80:
                    return b"".join(parts).decode()

    def close(self):
        self.sock.close()


class Page:
    """url open in a headless Chromium of its own (window w x h)."""

    def __init__(self, url, tmp, size=(1100, 1650)):
        self.prof = tempfile.mkdtemp(prefix="chrome-", dir=tmp)
        self.errlog = open(os.path.join(self.prof, "stderr"), "w+")
        self.proc = subprocess.Popen(
            [shutil.which("chromium") or "chromium", "--headless", "--no-sandbox",
             "--disable-gpu", "--no-first-run", "--user-data-dir=" + self.prof,
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "--window-size=%d,%d" % size, url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.errlog)
        self.ws = None
        self.next_id = 0
        try:
            self.ws = _WebSocket(self._page_url(url), scaled(10))
        except Exception:
            self.close()
            raise

    def _page_url(self, url):
        deadline = time.monotonic() + scaled(30)
        port = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            if port is None:
                self.errlog.seek(0)
                m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/",
                              self.errlog.read())
                port = int(m.group(1)) if m else None
            if port is not None:
                with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port,
                                            timeout=scaled(10)) as r:
                    pages = [t for t in json.load(r)
                             if t.get("type") == "page" and t.get("url", "").startswith(
                                 url.split("#")[0])]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        self.errlog.seek(0)
        raise CdpError("chromium gave no page to debug: %s" % self.errlog.read()[-2000:])

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (JSON-able)."""
        self.next_id += 1
        self.ws.sock.settimeout(scaled(10))
        self.ws.send(json.dumps({"id": self.next_id, "method": "Runtime.evaluate",
                                 "params": {"expression": expression,
                                            "returnByValue": True}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") != self.next_id:
                continue                     # an event: not asked for
            if "error" in msg or "exceptionDetails" in msg.get("result", {}):
                raise CdpError("evaluate %r: %r" % (expression, msg))
            return msg["result"]["result"].get("value")

    def close(self):
        if self.ws:
            self.ws.close()
            self.ws = None
        stop_process(self.proc, 5)
        self.errlog.close()
        shutil.rmtree(self.prof, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False
