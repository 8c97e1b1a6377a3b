"""proctest — what a test can see of kasi's worker process from outside.

  * worker_pid(k): the pid of the worker serving a Kasi (the supervisor,
    k.pid, forks it and logs "worker N started").
  * fd_count(pid), rss_kib(pid): open descriptors and resident memory,
    read from /proc.
  * wait_for(cond, timeout): poll cond() until it is true (bounded).
  * settle_fds(pid, want, timeout): wait until the worker holds `want`
    descriptors or fewer; returns the last count.

Only the standard library is used; Linux /proc is required.
"""
import os
import re
import time

from kasitest import scaled


def worker_pid(k, timeout=5):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        m = re.search(r"worker (\d+) started", k.log())
        if m:
            return int(m.group(1))
        time.sleep(0.02)
    raise RuntimeError("no worker pid in the log")


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def wait_for(cond, timeout):
    """True as soon as cond() is; False when timeout (scaled) passes first."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        if cond():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def settle_fds(pid, want, timeout=5):
    wait_for(lambda: fd_count(pid) <= want, timeout)
    return fd_count(pid)
