#!/usr/bin/env python3
"""The Debian package: `make deb` builds it (auth_users 0640 in it);
`dpkg -i` installs the binary, data, docs, units and /etc/kasi as
conffiles, creates the kasi system user, makes the spool root's with the
group kasi (1770) and enables kasi.service; the installed kasi (started by
hand: no systemd here) checks /etc/kasi and, with only the capabilities of
the installed kasi.service (setpriv), spools into /var/spool/kasi,
reloads, shows its workers in `kasi status` and stops; `dpkg -r` leaves
nothing but the conffiles, `dpkg -P` removes those and the spool.

It installs into the machine's dpkg database, so: root only; skipped when
kasi or /etc/kasi is already on the machine (never touches a real one);
one run at a time (a lock); and the package is purged at the end, also on
failure or SIGTERM (and the kasi user deleted if this test created it)."""
import fcntl
import glob
import os
import pwd
import re
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kasitest  # noqa: E402
from kasitest import *  # noqa: E402,F401,F403
from installtest import (tempdir, make, todo_ok,  # noqa: E402
                         unit_setpriv, serve_confined)

LOCK = "/run/lock/kasi-deb-test.lock"
UNITS = "/lib/systemd/system"


def skip_all(why):
    print("1..0 # SKIP %s" % why)
    sys.exit(0)


def dpkg_status():
    r = run(["dpkg-query", "-W", "-f=${Status}", "kasi"])
    return r.stdout.strip() if r.returncode == 0 else "not-installed"


def present():
    """Why the machine already has kasi, or None."""
    st = dpkg_status()
    if st != "not-installed" and not st.endswith("not-installed"):
        return "the kasi package is on this machine (%s)" % st
    if os.path.exists("/etc/kasi"):
        return "/etc/kasi exists on this machine"
    return None


if os.geteuid() != 0:
    skip_all("needs root (dpkg -i into this machine)")
if present():
    skip_all(present() + "; not touching it")


def take_lock(timeout=600):
    """One package test per machine; waits (bounded) for another run."""
    fd = os.open(LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RuntimeError("another package test holds %s" % LOCK)
            time.sleep(0.5)


def dpkg(*args, timeout=180):
    """dpkg, retried (bounded) while apt or another dpkg holds its lock."""
    deadline = time.monotonic() + timeout
    while True:
        r = run(["dpkg"] + list(args), timeout=timeout)
        if r.returncode == 0 or "lock" not in r.stderr or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def version_h():
    with open(os.path.join(REPO, "src/core/version.h")) as f:
        return re.search(r'#define KASI_VERSION "([^"]+)"', f.read()).group(1)


def terminate(signum, frame):
    raise SystemExit("signal %d" % signum)


signal.signal(signal.SIGTERM, terminate)
signal.signal(signal.SIGHUP, terminate)

tmp = tempdir("deb")
build = os.path.join(tmp, "build")
lock = take_lock()
if present():
    skip_all(present() + " (installed while waiting); not touching it")
try:
    pwd.getpwnam("kasi")
    user_existed = True
except KeyError:
    user_existed = False
installed = False


def package_files(deb):
    """The files (not directories) of the package, as absolute paths."""
    r = run(["sh", "-c", "dpkg-deb --fsys-tarfile '%s' | tar -t" % deb])
    names = [n[1:] for n in r.stdout.split("\n") if n.startswith("./") and n != "./"]
    return [n for n in names if not n.endswith("/")]


def check_built(deb):
    r = run(["dpkg-deb", "-f", deb, "Package", "Version", "Depends"])
    like(r.stdout, r"Package: kasi\nVersion: %s\n" % re.escape(version_h()),
         "package version is src/core/version.h's")
    like(r.stdout, r"Depends: .*adduser", "depends on adduser")
    r = run(["sh", "-c", "dpkg-deb --ctrl-tarfile '%s' | tar -xO ./conffiles" % deb])
    conf = r.stdout.split()
    ok("/etc/kasi/smtp.yaml" in conf and "/etc/kasi/queue/smtp_forward.yaml" in conf
       and all(c.startswith("/etc/kasi/") for c in conf), "conffiles: /etc/kasi/*",
       r.stdout)
    r = run(["dpkg-deb", "-c", deb])
    like(r.stdout, r"(?m)^-rw-r----- root/root .* \./etc/kasi/auth_users$",
         "auth_users is 0640 in the package")
    return conf


def check_installed():
    like(dpkg_status(), r"^install ok installed$", "dpkg -i: installed")
    r = run(["/usr/sbin/kasi", "-V"])
    is_(r.stdout.strip(), "kasi " + version_h(), "/usr/sbin/kasi -V")
    u = pwd.getpwnam("kasi")
    ok(0 < u.pw_uid < 1000 and u.pw_shell.endswith("nologin"),
       "kasi system user", repr(u))
    st = os.stat("/var/spool/kasi")
    ok(st.st_uid == 0 and st.st_gid == u.pw_gid and st.st_mode & 0o7777 == 0o1770,
       "/var/spool/kasi: root:kasi 1770", repr(st))
    st = os.stat("/etc/kasi/auth_users")
    ok(st.st_uid == 0 and st.st_gid == u.pw_gid and st.st_mode & 0o777 == 0o640,
       "/etc/kasi/auth_users: root:kasi 0640", repr(st))
    wants = "/etc/systemd/system/multi-user.target.wants/kasi.service"
    is_(os.path.realpath(wants), os.path.realpath(UNITS + "/kasi.service"),
        "kasi.service enabled")
    ok(not os.path.lexists("/etc/systemd/system/sockets.target.wants/kasi.socket"),
       "kasi.socket installed, not enabled")
    with open("/etc/kasi/smtp.yaml") as f:
        like(f.read(), r"\nuser: kasi\n", "the packaged smtp.yaml says user: kasi")
    with open(UNITS + "/kasi.service") as f:
        doc = re.search(r"\nDocumentation=file:(\S+)", f.read())
    ok(doc and os.path.isfile(doc.group(1)), "the unit's Documentation= file exists",
       doc and doc.group(1))


def check_units():
    if not shutil.which("systemd-analyze"):
        diag("systemd-analyze not installed: unit checks skipped")
        return
    r = run(["systemd-analyze", "verify", UNITS + "/kasi.service", UNITS + "/kasi.socket"],
            timeout=30)
    ok(r.returncode == 0 and not r.stderr.strip(), "systemd-analyze verify: installed units",
       r.stdout + r.stderr)
    r = run(["systemd-analyze", "security", "--offline=true", UNITS + "/kasi.service"],
            timeout=30)
    m = re.search(r"Overall exposure level for kasi\.service: ([\d.]+)", r.stdout)
    ok(m and float(m.group(1)) <= 2.5, "systemd-analyze security: exposure <= 2.5",
       m.group(0) if m else r.stdout[-2000:] + r.stderr)


def by_hand():
    """/usr/sbin/kasi started by hand on the packaged config (or on a copy
    without user: while this kasi does not know the key), on a loopback
    port, as kasi.service would start it (its ExecStartPre= check too):
    with only the unit's capabilities. The messages land in the compiled-in
    /var/spool/kasi; reload, status and stop work."""
    wrap, why = unit_setpriv(UNITS + "/kasi.service")
    if wrap is None:
        skip("installed kasi with the unit's capabilities", why)
        wrap = []
    else:
        diag("the unit's capabilities: %s" % wrap[1])
    r = run(wrap + ["/usr/sbin/kasi", "-t", "-c", "/etc/kasi"])
    passed = r.returncode == 0 and "configuration ok" in r.stdout
    unknown_user = re.search(r"unknown key 'user'", r.stderr)
    if unknown_user:
        todo_ok(passed, "kasi -t -c /etc/kasi", "this kasi has no user: key yet", r.stderr)
    else:
        ok(passed, "kasi -t -c /etc/kasi", r.stdout + r.stderr)
    conf = "/etc/kasi"
    if unknown_user:
        conf = os.path.join(tmp, "etc-kasi")
        shutil.copytree("/etc/kasi", conf)
        with open(os.path.join(conf, "smtp.yaml")) as f:
            text = f.read()
        with open(os.path.join(conf, "smtp.yaml"), "w") as f:
            f.write(re.sub(r"\nuser: kasi\n", "\n", text))
    run_dir = os.path.join(tmp, "run")
    os.makedirs(run_dir)
    ids = serve_confined("/usr/sbin/kasi", conf, run_dir, "/var/spool/kasi", wrap,
                         "installed kasi" + (", the unit's capabilities" if wrap else ""))
    for mid in ids:
        for ext in (".eml", ".env"):
            os.unlink(os.path.join("/var/spool/kasi", mid + ext))
    r = run(["/usr/sbin/kasi", "init", os.path.join(tmp, "dep")])
    ok(r.returncode == 0, "installed kasi init (defaults from /usr/share/kasi)", r.stderr)
    r = run(["/usr/sbin/kasi", "-t", "-c", os.path.join(tmp, "dep/config")])
    ok(r.returncode == 0, "the init'ed deployment passes -t", r.stderr)


def check_removed(files, conf):
    r = dpkg("-r", "kasi")
    ok(r.returncode == 0, "dpkg -r kasi", r.stdout + r.stderr)
    like(dpkg_status(), r"^deinstall ok config-files$", "dpkg -r: config-files state")
    left = [f for f in files if f not in conf and os.path.lexists(f)]
    is_(left, [], "dpkg -r: no package file left but conffiles")
    missing = [c for c in conf if not os.path.exists(c)]
    is_(missing, [], "dpkg -r: the conffiles stay")
    gone = [d for d in ("/usr/share/kasi", "/usr/share/doc/kasi") if os.path.exists(d)]
    is_(gone, [], "dpkg -r: kasi's directories are gone")
    # the spool is data, kept by -r for a reinstall (Debian policy); here it
    # holds at most the statistics history the stopped server wrote
    kept = sorted(os.listdir("/var/spool/kasi")) if os.path.isdir("/var/spool/kasi") else []
    ok(set(kept) <= {"kasi.stats"}, "dpkg -r: the spool keeps only runtime data", kept)
    r = dpkg("-P", "kasi")
    ok(r.returncode == 0, "dpkg -P kasi", r.stdout + r.stderr)
    ok(dpkg_status().endswith("not-installed"), "dpkg -P: not installed", dpkg_status())
    left = [p for p in ["/etc/kasi", "/var/spool/kasi",
                        "/etc/systemd/system/multi-user.target.wants/kasi.service"] + files
            if os.path.lexists(p)]
    is_(left, [], "dpkg -P: nothing left (conffiles, spool, unit link)")


def cleanup():
    if installed and not dpkg_status().endswith("not-installed"):
        r = dpkg("-P", "kasi")
        if r.returncode != 0:
            diag("purge failed:\n" + r.stdout + r.stderr)
    if not user_existed:
        run(["userdel", "kasi"])
        run(["groupdel", "kasi"])


try:
    r = make("deb", "BUILD=" + build, timeout=600)
    ok(r.returncode == 0, "make deb")
    debs = [d for d in glob.glob(os.path.join(build, "deb", "kasi_*.deb"))]
    is_(len(debs), 1, "one kasi_VERSION_ARCH.deb")
    if debs:
        deb = debs[0]
        conf = check_built(deb)
        files = package_files(deb)
        installed = True
        r = dpkg("-i", deb)
        ok(r.returncode == 0, "dpkg -i", r.stdout + r.stderr)
        check_installed()
        r = dpkg("-i", deb)
        ok(r.returncode == 0 and dpkg_status() == "install ok installed",
           "dpkg -i again (the upgrade path: user and files already there)",
           r.stdout + r.stderr)
        check_units()
        by_hand()
        check_removed(files, conf)
finally:
    cleanup()
    os.close(lock)
    if kasitest._Tap.failed or os.environ.get("KASI_KEEP"):
        diag("kept test directory %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
done()
