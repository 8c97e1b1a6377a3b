"""fakeserver.py — a scripted TCP server on loopback for tests that need a
downstream to misbehave on cue (drop mid-DATA, never answer, per-recipient
LMTP replies), which a real Postfix cannot do on demand.

Subclasses implement serve(conn); each connection runs in its own daemon
thread. stop() closes the listener and sets `stopped`, which a serve()
that holds a connection open should wait on (bounded)."""
import socket
import threading


class FakeServer:
    def __init__(self, backlog=16):
        self.stopped = threading.Event()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(backlog)
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                c, _ = self.srv.accept()
            except OSError:
                continue
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, conn):
        raise NotImplementedError

    def stop(self):
        self.stopped.set()
        self.srv.close()
