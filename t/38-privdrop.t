#!/usr/bin/env python3
"""Privilege drop (run as root only): with user: nobody the supervisor
stays root (it binds listeners on reload) and every worker runs as
nobody/nogroup with no other groups; a spool the workers can neither own
nor write through their group becomes theirs (0700) and each spooled file
is 0600; the state directory is root's with the workers' group (0710, the
copies 0640); a reload still works. With only the capabilities of
contrib/systemd/kasi.service (setpriv) and the spool laid out as
docs/install.md says (root:nogroup 1770), kasi spools mail, reloads,
shows its workers in status and stops; without CAP_KILL it refuses to
start, and without the right spool it names the fix. Started as root
without user: kasi refuses to start, naming the fix; user: root is
accepted. Unknown users and groups are config errors with file:line.
kasi passwd creates its users file 0600."""
import grp
import os
import pwd
import re
import signal
import stat
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403
from installtest import unit_setpriv, serve_confined  # noqa: E402


def ids(pid):
    with open("/proc/%d/status" % pid) as f:
        text = f.read()
    uid = re.search(r"^Uid:\s+(.*)$", text, re.M).group(1).split()
    gid = re.search(r"^Gid:\s+(.*)$", text, re.M).group(1).split()
    groups = re.search(r"^Groups:[ \t]*(.*)$", text, re.M).group(1).split()
    return [int(x) for x in uid], [int(x) for x in gid], [int(x) for x in groups]


if os.geteuid() != 0:
    ok(True, "skip: privilege drop needs root")
    done()

try:
    NOBODY = pwd.getpwnam("nobody")
    GROUP = grp.getgrgid(NOBODY.pw_gid).gr_name
except KeyError:
    ok(True, "skip: no user nobody")
    done()
U, G = NOBODY.pw_uid, NOBODY.pw_gid


def traversable(k):
    """The workers' user must reach the spool (and the generations kept
    in it), as in production: open the test's directory for search."""
    os.chmod(k.tmp, 0o711)
    return k


MSG = b"From: a@client.test\r\nSubject: dropped\r\n\r\nbody\r\n"
with traversable(Kasi({"user": "nobody", "workers": 2}, start=False)).start() as k:
    pids = k.wait_workers(2) or []
    is_(len(pids), 2, "two workers")
    for p in pids:
        uid, gid, groups = ids(p)
        is_(uid, [U] * 4, "worker %d: real, effective, saved and fs uid are nobody" % p)
        is_(gid, [G] * 4, "worker %d: all gids are %s" % (p, GROUP))
        ok(set(groups) <= {G}, "worker %d: no supplementary groups but %s" % (p, GROUP),
           repr(groups))
    is_(ids(k.pid)[0][1], 0, "the supervisor stays root")
    code, lines = send_message(k.port, "a@client.test", ["b@example.test"], MSG)
    is_(code, 250, "a message is accepted")
    st = os.stat(k.spool_dir)
    is_((st.st_uid, stat.S_IMODE(st.st_mode)), (U, 0o700), "the spool is nobody's, 0700")
    mid = queued_id(lines)
    for ext in (".eml", ".env"):
        st = os.stat(os.path.join(k.spool_dir, mid + ext))
        is_((st.st_uid, stat.S_IMODE(st.st_mode)), (U, 0o600),
            "%s belongs to nobody, mode 0600" % ext)
    gen = os.path.join(k.spool_dir, ".gen")
    st = os.stat(gen)
    is_((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, G, 0o710),
        "the state directory is root's, group %s, 0710" % GROUP)
    st = os.stat(os.path.join(gen, "1", "config", "smtp.yaml"))
    is_((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, G, 0o640),
        "a generation's copy of smtp.yaml: root's, group %s, 0640" % GROUP)
    k.signal(signal.SIGHUP)
    m = k.wait_log(r"generation 2 live \(was 1\): .*workers (\d+) (\d+) ready")
    ok(m, "reload works")
    if m:
        is_(ids(int(m.group(1)))[0][0], U, "the new generation runs as nobody too")

# a spool made by mkdir as root: 0700, given to the workers
with traversable(Kasi({"user": "nobody", "spool_dir": "new-spool"}, start=False)).start() as k:
    spool = os.path.join(k.tmp, "config", "new-spool")
    st = os.stat(spool)
    is_((st.st_uid, stat.S_IMODE(st.st_mode)), (U, 0o700), "a new spool dir: 0700, nobody's")

# Under the systemd unit's capabilities (setpriv), with the spool as
# docs/install.md lays it out: root's, the workers' group, 1770.
UNIT = os.path.join(REPO, "contrib/systemd/kasi.service")
wrap, why = unit_setpriv(UNIT)


def confined_kasi(spool_owner, spool_mode):
    k = traversable(Kasi({"user": "nobody", "workers": 2}, start=False))
    os.chown(k.spool_dir, *spool_owner)
    os.chmod(k.spool_dir, spool_mode)
    return k


if wrap is None:
    skip("kasi under the unit's capabilities", why)
else:
    diag("the unit's capabilities: %s" % wrap[1])
    k = confined_kasi((0, G), 0o1770)
    ids_ = serve_confined(KASI_BIN, k.confdir, k.tmp, k.spool_dir, wrap,
                          "with the unit's capabilities", workers=2)
    ok(not os.path.exists(os.path.join(k.spool_dir, ".gen")),
       "  the state directory is gone after the stop")
    k.cleanup()
    no_kill = [wrap[0], re.sub(r",\+kill\b", "", wrap[1])] + wrap[2:]
    k = confined_kasi((0, G), 0o1770)
    r = run(no_kill + [KASI_BIN, "-c", k.confdir], timeout=30)
    ok(r.returncode == 1 and "the supervisor needs CAP_KILL" in r.stderr,
       "without CAP_KILL: refuses to start, and says why", r.stderr[-2000:])
    k.cleanup()
    for owner, mode, want in [((U, G), 0o750, r"state directory .*/\.gen: Permission denied"),
                              ((0, 0), 0o750, r"spool_dir .*: Operation not permitted")]:
        k = confined_kasi(owner, mode)
        r = run(wrap + [KASI_BIN, "-c", k.confdir], timeout=30)
        ok(r.returncode == 1 and re.search(want + r" \(.*mode 1770", r.stderr),
           "a spool %d:%d %o under the unit: refused, naming the layout"
           % (owner[0], owner[1], mode), r.stderr[-2000:])
        k.cleanup()

# root without user: refused; user: root accepted
d = Kasi({"user": None}, start=False)
r = run([KASI_BIN, "-c", d.confdir])
is_(r.returncode, 1, "root without user: exits 1")
like(r.stderr, r"started as root without user: in smtp\.yaml.*user: root to really run as root",
     "  and says how to fix it")
d.cleanup()
with Kasi({"user": "root"}) as k:
    pid = (k.wait_workers(1) or [0])[0]
    is_(ids(pid)[0][0], 0, "user: root: the worker runs as root, as asked")

for cfg, want in [({"user": "no-such-user-kasi"}, r"user: no such user 'no-such-user-kasi'"),
                  ({"group": "no-such-group-kasi"}, r"group: no such group 'no-such-group-kasi'")]:
    d = Kasi(cfg, start=False)
    r = run([KASI_BIN, "-t", "-c", d.confdir])
    ok(r.returncode == 1 and re.search(r"smtp\.yaml:\d+: " + want, r.stderr),
       "%s: refused with file:line" % want, r.stderr)
    d.cleanup()

d = Kasi(start=False)
users = os.path.join(d.confdir, "auth_users")
r = subprocess.run([KASI_BIN, "passwd", users, "alice"], input="secret\n", text=True,
                   capture_output=True, timeout=30)
is_(r.returncode, 0, "kasi passwd adds a user", )
is_(stat.S_IMODE(os.stat(users).st_mode), 0o600, "the users file is created 0600")
d.cleanup()
done()
