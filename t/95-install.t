#!/usr/bin/env python3
"""make install and kasi init: `make install DESTDIR=... PREFIX=/usr` lays
out the binary, data, docs, configuration, spool and units; the installed
binary finds its data next to itself and serves mail from a config dir
there; a second make install keeps a changed config file (new default as
.dist); a kasi installed under another PREFIX and then copied elsewhere
finds its compiled-in data dir and spools into the compiled-in SPOOLDIR;
the systemd units pass `systemd-analyze verify` and rate at most 2.5;
as root, `make install KASI_USER=nobody` makes the spool root's with
nobody's group, mode 1770, and that install serves mail, reloads, shows
its workers and stops with only the capabilities of its kasi.service;
`kasi init` makes a deployment that `kasi -t` accepts and that serves
mail (with a site plugin), and refuses a non-empty directory."""
import filecmp
import os
import pwd
import re
import shutil
import stat
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kasitest  # noqa: E402
from kasitest import *  # noqa: E402,F401,F403
from installtest import (tempdir, make, Server, send, wait_spooled,  # noqa: E402
                         unit_setpriv, serve_confined)

tmp = tempdir("install")
build = os.path.join(tmp, "build")
root = os.path.join(tmp, "root")


# under make test-asan the installed binary is a sanitizer build too
SAN = (["OPT=-O1 -fno-omit-frame-pointer -fsanitize=address,undefined "
        "-fno-sanitize-recover=all", "LDFLAGS=-fsanitize=address,undefined"]
       if os.environ.get("KASI_ASAN") else [])


def path(*parts):
    return os.path.join(root, *parts)


def check(binary, confdir, name):
    r = run([binary, "-t", "-c", confdir])
    return ok(r.returncode == 0 and "configuration ok" in r.stdout, name,
              r.stdout + r.stderr)


def serve_one(binary, confdir, cwd, spool, subject, name):
    """Start binary on confdir, send one message, find it in spool."""
    with Server(binary, confdir, cwd) as s:
        if not ok(s.port, "%s: starts" % name):
            return None
        is_(send(s.port, "someone@example.com", subject)[0], 250, "%s: 250" % name)
        ids = wait_spooled(spool, subject)
        is_(len(ids), 1, "%s: message in %s" % (name, spool))
        is_(s.stop(), 0, "%s: exits 0 on SIGTERM" % name)
        no_sanitizer(s.log(), name)
        return s


def no_sanitizer(text, name):
    unlike(text, "|".join(SANITIZER_MARKS), "%s: no sanitizer report" % name)


# ---- make install DESTDIR=root PREFIX=/usr ---------------------------------

r = make("install", *SAN, "BUILD=" + build, "DESTDIR=" + root, "PREFIX=/usr")
ok(r.returncode == 0, "make install DESTDIR=... PREFIX=/usr")
for rel in ("usr/sbin/kasi", "usr/share/kasi/lua/kasi.lua",
            "usr/share/kasi/plugins/queue/spool.lua", "usr/share/kasi/config/smtp.yaml",
            "usr/share/doc/kasi/README.md", "usr/share/doc/kasi/install.md",
            "etc/kasi/smtp.yaml", "etc/kasi/plugins", "etc/kasi/queue/smtp_forward.yaml",
            "usr/lib/systemd/system/kasi.service", "usr/lib/systemd/system/kasi.socket"):
    ok(os.path.isfile(path(rel)), "installed: /" + rel)
ok(os.access(path("usr/sbin/kasi"), os.X_OK), "the binary is executable")
ok(os.path.isdir(path("var/spool/kasi")), "spool directory /var/spool/kasi")
is_(oct(os.stat(path("var/spool/kasi")).st_mode & 0o777), "0o750", "spool mode 0750")
is_(oct(os.stat(path("etc/kasi/auth_users")).st_mode & 0o777), "0o640",
    "auth_users (password hashes) mode 0640")
ok(filecmp.cmp(os.path.join(REPO, "config/relay.yaml"),
               path("usr/share/kasi/config/relay.yaml"), shallow=False),
   "the data dir holds the default config as shipped")

with open(path("etc/kasi/smtp.yaml")) as f:
    sysconf = f.read()
like(sysconf, r"\nlisten:\n  - 0\.0\.0\.0:25 .*\n  - \"\[::\]:25\"\n", "/etc/kasi listens on port 25")
like(sysconf, r"\n# spool_dir: /var/spool/kasi ", "spool_dir: the compiled-in default")
unlike(sysconf, r"\nuser:", "no user: unless KASI_USER is given")
with open(path("usr/lib/systemd/system/kasi.service")) as f:
    like(f.read(), r"\nExecStart=/usr/sbin/kasi -c /etc/kasi\n", "unit: ExecStart path")

kasi = path("usr/sbin/kasi")
check(kasi, path("etc/kasi"), "installed kasi -t -c <DESTDIR>/etc/kasi")

# the installed binary, a config dir next to it (spool in the temp dir)
site = os.path.join(tmp, "site")
shutil.copytree(path("etc/kasi"), os.path.join(site, "config"))
with open(os.path.join(site, "config/smtp.yaml"), "a") as f:
    f.write("spool_dir: %s\n" % os.path.join(site, "spool"))
serve_one(kasi, os.path.join(site, "config"), site, os.path.join(site, "spool"),
          "installed", "installed binary")

# a second install keeps the admin's change; the new default goes beside it
relay = path("etc/kasi/relay.yaml")
with open(relay, "a") as f:
    f.write("# changed by the admin\n")
r = make("install", *SAN, "BUILD=" + build, "DESTDIR=" + root, "PREFIX=/usr")
ok(r.returncode == 0, "make install again")
like(r.stdout, r"kept .*/etc/kasi/relay\.yaml \(changed\)", "it says it kept relay.yaml")
with open(relay) as f:
    like(f.read(), r"# changed by the admin\n$", "the changed relay.yaml is kept")
ok(filecmp.cmp(os.path.join(REPO, "config/relay.yaml"), relay + ".dist", shallow=False),
   "the new default is relay.yaml.dist")
ok(not os.path.exists(path("etc/kasi/smtp.yaml.dist")), "no .dist for an unchanged file")

r = make("uninstall", "BUILD=" + build, "DESTDIR=" + root, "PREFIX=/usr")
ok(r.returncode == 0 and not os.path.exists(kasi)
   and not os.path.exists(path("usr/share/kasi"))
   and not os.path.exists(path("usr/lib/systemd/system/kasi.service")),
   "make uninstall removes binary, data and units")
ok(os.path.isfile(relay) and os.path.isdir(path("var/spool/kasi")),
   "make uninstall keeps the configuration and the spool")

# ---- another PREFIX, no DESTDIR: the compiled-in paths are real ------------

prefix = os.path.join(tmp, "p")
spool = os.path.join(prefix, "spool")
r = make("install", *SAN, "BUILD=" + build, "PREFIX=" + prefix, "SPOOLDIR=" + spool,
         "SYSCONFDIR=" + os.path.join(prefix, "etc"))
ok(r.returncode == 0, "make install PREFIX=<tmp> (rebuilds only the paths)")
like(r.stdout, r"-o \S*core/paths\.o .*-o \S*core/config\.o|-o \S*core/config\.o .*-o \S*core/paths\.o",
     "the compiled-in paths were rebuilt")
unlike(r.stdout, r"-o \S*/session\.o", "and nothing else")
elsewhere = os.path.join(tmp, "elsewhere")
os.makedirs(elsewhere)
copied = os.path.join(elsewhere, "kasi")
shutil.copy2(os.path.join(prefix, "sbin/kasi"), copied)
check(copied, os.path.join(prefix, "etc"), "a copied binary finds the compiled-in data dir")
serve_one(copied, os.path.join(prefix, "etc"), elsewhere, spool, "copied",
          "copied binary, spool_dir unset: the compiled-in SPOOLDIR")
datadir = os.path.join(prefix, "share/kasi")
os.rename(datadir, datadir + ".moved")
r = run([copied, "-t", "-c", os.path.join(prefix, "etc")])
os.rename(datadir + ".moved", datadir)
ok(r.returncode == 1 and "lua/kasi.lua not found" in r.stderr,
   "without its data dir the copy says what is missing", r.stderr)

# ---- systemd units ---------------------------------------------------------

units = os.path.join(prefix, "lib/systemd/system")
with open(os.path.join(units, "kasi.service")) as f:
    unit = f.read()
like(unit, r"\nExecStart=%s -c %s\n" % (re.escape(os.path.join(prefix, "sbin/kasi")),
                                        re.escape(os.path.join(prefix, "etc"))),
     "unit written with the install's paths")
like(unit, r"\nReadWritePaths=%s\n" % re.escape(spool), "unit: ReadWritePaths is SPOOLDIR")
like(unit, r"\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_KILL\n",
     "unit: four capabilities, none over files")
like(unit, r"\nRuntimeDirectory=kasi\n", "unit: /run/kasi for the pid file")
if shutil.which("systemd-analyze"):
    r = run(["systemd-analyze", "verify", os.path.join(units, "kasi.service"),
             os.path.join(units, "kasi.socket")], timeout=30)
    ok(r.returncode == 0 and not r.stderr.strip(), "systemd-analyze verify: clean",
       r.stdout + r.stderr)
    r = run(["systemd-analyze", "security", "--offline=true",
             os.path.join(units, "kasi.service")], timeout=30)
    m = re.search(r"Overall exposure level for kasi\.service: ([\d.]+)", r.stdout)
    ok(m and float(m.group(1)) <= 2.5, "systemd-analyze security: exposure <= 2.5",
       m.group(0) if m else r.stdout[-2000:] + r.stderr)
    if m:
        diag("exposure %s" % m.group(1))
else:
    diag("systemd-analyze not installed: unit checks skipped")

# ---- make install KASI_USER=: the spool for the user, the unit's capabilities

if os.geteuid() != 0:
    skip("make install KASI_USER=nobody", "needs root (chown of the spool)")
else:
    nobody = pwd.getpwnam("nobody")
    inst = os.path.join(tmp, "u")
    uspool = os.path.join(inst, "spool")
    r = make("install", *SAN, "BUILD=" + build, "PREFIX=" + inst, "SPOOLDIR=" + uspool,
             "SYSCONFDIR=" + os.path.join(inst, "etc"), "KASI_USER=nobody")
    ok(r.returncode == 0, "make install KASI_USER=nobody")
    st = os.stat(uspool)
    is_((st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))), (0, nobody.pw_gid, "0o1770"),
        "KASI_USER: the spool is root's with the user's group, mode 1770")
    os.chmod(tmp, 0o711)        # the workers must reach the spool
    wrap, why = unit_setpriv(os.path.join(inst, "lib/systemd/system/kasi.service"))
    if wrap is None:
        skip("make install KASI_USER=nobody under its unit's capabilities", why)
    else:
        serve_confined(os.path.join(inst, "sbin/kasi"), os.path.join(inst, "etc"), inst,
                       uspool, wrap, "make install KASI_USER=nobody, the unit's capabilities")

# ---- kasi init -------------------------------------------------------------

kasi = os.path.join(prefix, "sbin/kasi")
dep = os.path.join(tmp, "dep")
r = run([kasi, "init", dep])
ok(r.returncode == 0, "kasi init DIR", r.stdout + r.stderr)
for rel in ("config/smtp.yaml", "config/plugins", "config/queue/lmtp.yaml", "README"):
    ok(os.path.isfile(os.path.join(dep, rel)), "init: %s" % rel)
ok(os.path.isdir(os.path.join(dep, "plugins")), "init: plugins/")
ok(filecmp.cmp(os.path.join(REPO, "config/smtp.yaml"),
               os.path.join(dep, "config/smtp.yaml"), shallow=False),
   "init: smtp.yaml is the default one (spool_dir: ../spool)")
check(kasi, os.path.join(dep, "config"), "kasi -t -c DIR/config")

# a site plugin in DIR/plugins, listed before the queue
with open(os.path.join(dep, "plugins/no_bob.lua"), "w") as f:
    f.write("local P = {}\n"
            "function P.hook_rcpt(conn, txn, rcpt)\n"
            "  if rcpt.user == 'bob' then return DENY, 'No bob here' end\n"
            "end\nreturn P\n")
with open(os.path.join(dep, "config/plugins")) as f:
    plugins = f.read()
with open(os.path.join(dep, "config/plugins"), "w") as f:
    f.write(plugins.replace("\nqueue/spool", "\nno_bob\nqueue/spool"))
with Server(kasi, os.path.join(dep, "config"), dep) as s:
    ok(s.port, "init'ed deployment starts")
    is_(send(s.port, "someone@example.com", "init")[0], 250, "init'ed deployment: 250")
    ids = wait_spooled(os.path.join(dep, "spool"), "init")
    is_(len(ids), 1, "init'ed deployment: message in DIR/spool")
    code, text = send(s.port, "bob@example.com", "bob")
    is_((code, text), (550, "5.7.1 No bob here"), "the site plugin in DIR/plugins runs")
    is_(s.stop(), 0, "init'ed deployment exits 0")
    no_sanitizer(s.log(), "init'ed deployment")

r = run([kasi, "init", dep])
no_sanitizer(r.stderr, "kasi init")
ok(r.returncode == 1 and "not empty" in r.stderr, "init refuses a non-empty DIR", r.stderr)
empty = os.path.join(tmp, "empty")
os.makedirs(empty)
r = run([kasi, "init", empty])
ok(r.returncode == 0 and os.path.isfile(os.path.join(empty, "config/smtp.yaml")),
   "init takes an existing empty DIR", r.stderr)
r = run([kasi, "init", os.path.join(tmp, "no/such/parent")])
ok(r.returncode == 1 and "No such file or directory" in r.stderr,
   "init: a missing parent is an error", r.stderr)
r = run([kasi, "init"])
ok(r.returncode == 2 and "usage: kasi init DIR" in r.stderr, "init without DIR: usage, 2")
r = run([kasi, "init", "a", "b"])
is_(r.returncode, 2, "init with two arguments: usage, 2")

if kasitest._Tap.failed or os.environ.get("KASI_KEEP"):
    diag("kept test directory %s" % tmp)
else:
    shutil.rmtree(tmp, ignore_errors=True)
done()
