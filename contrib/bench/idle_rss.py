#!/usr/bin/env python3
"""idle_rss.py — RSS of an SMTP server holding N idle connections.

Opens N connections to HOST:PORT (loopback only), reads the banner, sends
EHLO, reads the reply, holds them, then prints the RSS (KiB) of PID (and its
children) before and after. Bounded: every socket operation has a timeout.

usage: idle_rss.py PORT PID N
"""
import os
import socket
import sys
import time


def rss_kib(pid):
    total = 0
    pids = [pid]
    try:
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
        pids += [int(k) for k in kids]
    except OSError:
        pass
    for p in pids:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def read_reply(s):
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            raise IOError("closed")
        buf += chunk
        lines = buf.split(b"\r\n")
        for ln in lines[:-1]:
            if len(ln) >= 4 and ln[3:4] == b" ":
                return buf


def main():
    port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    before = rss_kib(pid)
    socks = []
    deadline = time.time() + 120
    for i in range(n):
        if time.time() > deadline:
            break
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        read_reply(s)
        s.sendall(b"EHLO bench.example\r\n")
        read_reply(s)
        socks.append(s)
    time.sleep(0.5)
    after = rss_kib(pid)
    held = len(socks)
    print(f"connections={held} rss_before_kib={before} rss_after_kib={after} "
          f"kib_per_conn={(after - before) / max(held, 1):.2f}")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
