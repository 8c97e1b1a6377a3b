#!/usr/bin/env python3
"""Statistics: a bounded load with a known mix (three plugins reject 10 %,
20 % and 30 % of the recipients by number, a fourth runs past its budget
for every 50th) and /stats.json and /metrics equal the client's own
counts exactly, across a SIGHUP and a kill -9 of the worker (2 workers:
only the slots they were started in are listed); promtool
finds nothing to say; the page, rendered by headless Chromium during the
load, ranks the plugins with the right shares and its numbers move; the
token is required (401 without) and a non-loopback http.listen without one
fails kasi -t; kasi top prints the table; the history survives a
restart."""
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kasitest import *  # noqa: E402,F401,F403

TOKEN = "t0ken-for-the-stats-test"
MIX = {"rej10": "n % 10 == 0", "rej20": "n % 10 == 1 or n % 10 == 2",
       "rej30": "n % 10 >= 3 and n % 10 <= 5"}


def rejecting_plugin(name, cond):
    return ('local P = {}\n'
            'function P.hook_rcpt(conn, txn, rcpt)\n'
            '  local n = tonumber(rcpt.user:match("^u(%%d+)$"))\n'
            '  if n and (%s) then return DENY, "%s says no" end\n'
            'end\n'
            'return P\n' % (cond, name))


SLOW = '''local P = {}
function P.hook_rcpt(conn, txn, rcpt)
  local n = tonumber(rcpt.user:match("^u(%d+)$"))
  kasi.stats.incr("checked", {parity = n % 2 == 0 and "even" or "odd"})
  kasi.stats.observe("number", n % 7)
  if n % 50 == 6 then kasi.sleep(30) end
end
return P
'''

FILES = {"config/plugins": "rej10\nrej20\nrej30\nslow timeout=0.2\nqueue/discard\n",
         "plugins/slow.lua": SLOW}
for _name, _cond in MIX.items():
    FILES["plugins/%s.lua" % _name] = rejecting_plugin(_name, _cond)


# ------------------------------------------------------------ config checks

def check_config(http_yaml):
    tmp = tempfile.mkdtemp(prefix="kasi-t-")
    os.makedirs(os.path.join(tmp, "config"))
    with open(os.path.join(tmp, "config", "smtp.yaml"), "w") as f:
        f.write("listen: [\"127.0.0.1:0\"]\n" + http_yaml)
    res = run([KASI_BIN, "-t", "-c", os.path.join(tmp, "config")])
    shutil.rmtree(tmp, ignore_errors=True)
    return res.returncode, (res.stdout + res.stderr).strip()


rc, out = check_config("http:\n  listen: 0.0.0.0:8025\n")
ok(rc == 1 and re.search(r"smtp\.yaml:3: http\.listen: 0\.0\.0\.0 is not a loopback "
                         r"address: set http\.token", out),
   "kasi -t: a non-loopback http.listen without a token fails", out)
rc, out = check_config("http:\n  listen: \"[::]:8025\"\n  token: %s\n" % TOKEN)
is_(rc, 0, "kasi -t: with a token it may listen anywhere")
rc, out = check_config("http:\n  listen: \"[::1]:8025\"\n")
is_(rc, 0, "kasi -t: ::1 needs no token")
rc, out = check_config("http:\n  listen: 127.0.0.1:8025\n  token: short\n")
like(out, r"smtp\.yaml:4: http\.token: must be 16 characters or more", "a short token fails")
rc, out = check_config("http:\n  listen: 127.0.0.1:8025\n  tokn: x\n")
like(out, r"smtp\.yaml:4: unknown key 'http\.tokn' \(known: listen, token\)",
     "an unknown http key fails")
rc, out = check_config("http:\n  listen: 127.0.0.1\n")
like(out, r"smtp\.yaml:3: http\.listen: missing ':PORT'", "a bad address fails")


# ------------------------------------------------------------ the client

class Tally:
    """What the client saw, counted the way the server counts."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_rcpt = 0
        self.msgs = dict.fromkeys(("accepted", "rejected", "deferred", "dropped"), 0)
        self.rcpts = dict.fromkeys(("accepted", "rejected", "deferred"), 0)
        self.by_plugin = dict.fromkeys(MIX, 0)
        self.timeouts = 0
        self.reached_slow = 0
        self.conns = 0
        self.sessions = 0

    def numbers(self, k):
        with self.lock:
            first = self.next_rcpt
            self.next_rcpt += k
        return range(first, first + k)

    def add(self, msg_outcome, rcpt_results):
        with self.lock:
            self.conns += 1
            self.sessions += 1
            self.msgs[msg_outcome] += 1
            for code, text in rcpt_results:
                if code == 250:
                    self.rcpts["accepted"] += 1
                    self.reached_slow += 1
                elif code == 451:
                    self.rcpts["deferred"] += 1
                    self.timeouts += 1
                    self.reached_slow += 1
                else:
                    self.rcpts["rejected"] += 1
                    self.by_plugin[text.split()[-3]] += 1


def one_session(port, tally, index):
    s = smtplib.SMTP("127.0.0.1", port, timeout=scaled(10))
    s.ehlo("client.test")
    s.mail("a@client.test")
    if index % 7 == 3:                       # MAIL, then nothing: dropped
        s.quit()
        tally.add("dropped", [])
        return
    results, last = [], None
    for n in tally.numbers(1 + index % 4):
        code, text = s.rcpt("u%d@example.com" % n)
        results.append((code, text.decode()))
        last = code
    if any(c == 250 for c, _ in results):
        code, _ = s.data(b"Subject: stats\r\n\r\nhello\r\n")
        outcome = "accepted" if code == 250 else "rejected"
    else:
        outcome = "deferred" if last == 451 else "rejected"
    s.quit()
    tally.add(outcome, results)


def load(port, tally, sessions, threads=4, stop=None):
    """Run sessions (bounded) on a few threads; stop: an Event that ends it
    early. Returns the number of errors."""
    errors = []
    counter = iter(range(sessions))
    lock = threading.Lock()

    def worker():
        while stop is None or not stop.is_set():
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                one_session(port, tally, i)
            except Exception as e:       # a failure is a test failure below
                errors.append(repr(e))
                return

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=scaled(120))
    return errors


# ------------------------------------------------------------ HTTP

def http_port(k):
    m = k.wait_log(r"http: stats page at http://127\.0\.0\.1:(\d+)/")
    return int(m.group(1)) if m else None


def get(port, path, token=TOKEN):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path))
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=scaled(10)) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def stats(port, rng="1h"):
    code, _, body = get(port, "/stats.json?range=" + rng)
    return json.loads(body) if code == 200 else None


def metrics(port):
    return get(port, "/metrics")[2]


def metric(text, name, **labels):
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    rx = r"^%s%s (\S+)$" % (re.escape(name), re.escape("{%s}" % want) if want else "")
    m = re.search(rx, text, re.M)
    return float(m.group(1)) if m else None


def wait_for(fn, timeout=10):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def plugin(d, name):
    return next((p for p in d["plugins"] if p["name"] == name), None)


def check_counts(hport, tally, when):
    """stats.json and /metrics against the client's counts."""
    d = stats(hport)
    m = metrics(hport)
    is_(d["messages"], tally.msgs, "%s: messages by outcome" % when)
    is_({k: d["recipients"][k] for k in tally.rcpts}, tally.rcpts,
        "%s: recipients by outcome" % when)
    is_(d["connections"]["accepted"], tally.conns, "%s: connections" % when)
    got = {n: plugin(d, n)["answers"]["DENY"] for n in MIX}
    is_(got, tally.by_plugin, "%s: DENY answers per plugin" % when)
    is_(plugin(d, "slow")["timeouts"], tally.timeouts, "%s: slow's timeouts" % when)
    is_({n: metric(m, "kasi_hook_calls_total", plugin=n, hook="rcpt", answer="DENY")
         for n in MIX}, {n: float(v) for n, v in tally.by_plugin.items()},
        "%s: /metrics kasi_hook_calls_total DENY per plugin" % when)
    is_([metric(m, "kasi_messages_total", outcome=o, tls="no", auth="no")
         for o in tally.msgs], [float(v) for v in tally.msgs.values()],
        "%s: /metrics kasi_messages_total" % when)
    is_(metric(m, "kasi_hook_calls_total", plugin="slow", hook="rcpt", answer="timeout")
        or 0.0, float(tally.timeouts), "%s: /metrics timeouts" % when)
    checked = sum(c["count"] for c in d["custom"] if c["name"] == "checked")
    is_(checked, tally.reached_slow, "%s: kasi.stats.incr counts" % when)
    is_(d["open_connections"], 0, "%s: no open connections left" % when)
    return d, m


def promtool(text, when):
    if not shutil.which("promtool"):
        skip("promtool check metrics (%s)" % when, "promtool not installed")
        return
    res = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                         capture_output=True, timeout=scaled(30))
    ok(res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(),
       "promtool check metrics is clean (%s)" % when, res.stdout + res.stderr)


# ------------------------------------------------------------ the page

class Ranking(HTMLParser):
    """Rows of #ranking: plugin -> {field: data-value}, in order."""

    def __init__(self):
        super().__init__()
        self.rows, self.in_ranking, self.row, self.classes = [], False, None, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.in_ranking = a.get("id") == "ranking"
        elif self.in_ranking and tag == "tr" and "data-plugin" in a:
            self.row = {"name": a["data-plugin"]}
            self.rows.append(self.row)
            self.classes[a["data-plugin"]] = a.get("class", "")
        elif self.row is not None and tag == "td" and "data-field" in a:
            self.row[a["data-field"]] = a.get("data-value")

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_ranking = False


def render_page(hport, tmp):
    """The DOM after the page's script ran a few polls (virtual time)."""
    prof = tempfile.mkdtemp(prefix="chrome-", dir=tmp)
    res = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--user-data-dir=" + prof, "--virtual-time-budget=5000", "--dump-dom",
         "http://127.0.0.1:%d/#token=%s" % (hport, TOKEN)],
        capture_output=True, text=True, timeout=scaled(60))
    p = Ranking()
    p.feed(res.stdout)
    polls = re.search(r'<body[^>]*data-polls="(\d+)"', res.stdout)
    return p, int(polls.group(1)) if polls else 0, res


def shares_of(tally):
    total = sum(tally.by_plugin.values())
    return {n: round(v / total, 6) for n, v in tally.by_plugin.items()}


# ------------------------------------------------------------ the run

def running(d):
    return [w for w in ((d or {}).get("workers") or {}).get("list", []) if w["pid"]]


def generation_series(m):
    return re.findall(r"^kasi_plugin_generation\{worker=\"(\d+)\"\} \d+$", m, re.M)


with Kasi({"http": {"listen": "127.0.0.1:0", "token": TOKEN}, "workers": 2,
           "log": {"level": "info"}}, files=FILES) as k:
    hport = http_port(k)
    ok(hport, "the page's URL is in the log")
    tally = Tally()

    # the token
    is_(get(hport, "/stats.json", token=None)[0], 401, "/stats.json without a token: 401")
    code, headers, _ = get(hport, "/metrics", token=None)
    is_((code, headers.get("WWW-Authenticate")), (401, 'Bearer realm="kasi"'),
        "/metrics without a token: 401 with a Bearer challenge")
    is_(get(hport, "/metrics", token=TOKEN + "x")[0], 401, "a wrong token: 401")
    is_(get(hport, "/metrics", token=TOKEN[:-1])[0], 401, "a prefix of the token: 401")
    code, headers, body = get(hport, "/", token=None)
    ok(code == 200 and 'id="ranking"' in body and "text/html" in headers["Content-Type"],
       "the page itself needs no token (it holds no data)")
    is_(get(hport, "/app.js", token=None)[0], 200, "its script is served")
    is_(get(hport, "/nope")[0], 404, "an unknown path: 404")
    is_(get(hport, "/stats.json?range=7y")[0], 400, "an unknown range: 400")

    d = stats(hport)
    is_([p["name"] for p in d["plugins"]], ["rej10", "rej20", "rej30", "slow", "queue/discard"],
        "every loaded plugin has a row before any mail")
    is_(d["generation"], 1, "generation 1")
    w = d["workers"]
    is_((len(w["list"]), len(running(d)), w["running"], w["configured"]), (2, 2, 2, 2),
        "workers: only the two started slots listed, both running, two configured")
    m = metrics(hport)
    is_((sorted(generation_series(m)), metric(m, "kasi_workers"),
         metric(m, "kasi_workers_configured")), (sorted(str(x["slot"]) for x in w["list"]),
                                                 2.0, 2.0),
        "/metrics: kasi_plugin_generation for the two workers only; kasi_workers(_configured)")

    # phase 1
    is_(load(k.port, tally, 60), [], "phase 1: 60 sessions without client errors")
    d, m = check_counts(hport, tally, "phase 1")
    promtool(m, "phase 1")
    ok(plugin(d, "slow")["p99"] >= 0.2, "slow's p99 shows its timeouts",
       plugin(d, "slow")["p99"])

    # a reload
    k.signal(signal.SIGHUP)
    ok(wait_for(lambda: stats(hport)["generation"] == 2), "after SIGHUP: generation 2")
    d = stats(hport)
    is_(d["reloads"], {"ok": 1, "failed": 0}, "one reload, ok")
    ok(d["last_reload"] > 0, "last reload time set")

    # phase 2 with the page open during the load
    stop = threading.Event()
    errs = []
    # many sessions, ended by `stop` once both page reads are done, so the
    # load is still running while the page is read twice (bounded: 20000)
    bg = threading.Thread(target=lambda: errs.extend(load(k.port, tally, 20000, stop=stop)))
    bg.start()
    wait_for(lambda: tally.sessions >= 60 + 20, timeout=30)
    have_chromium = shutil.which("chromium") is not None
    if have_chromium:
        first, polls1, res1 = render_page(hport, k.tmp)
        second, _, _ = render_page(hport, k.tmp)
    stop.set()
    bg.join(timeout=scaled(60))
    is_(errs, [], "phase 2: no client errors")
    d, m = check_counts(hport, tally, "phase 2 (after SIGHUP)")
    if have_chromium:
        rows = {r["name"]: r for r in first.rows}
        ok(polls1 >= 2, "the page polled more than once", "polls=%d" % polls1,
           res1.stderr[-2000:])
        is_([r["name"] for r in first.rows][:3], ["rej30", "rej20", "rej10"],
            "page during load: ranked by rejections")
        near = {n: abs(float(rows[n]["share"]) - want) < 0.06
                for n, want in (("rej10", 1 / 6), ("rej20", 2 / 6), ("rej30", 3 / 6))}
        is_(near, dict.fromkeys(near, True), "page during load: shares near 1/6, 2/6, 3/6",
            ) or diag(repr(rows))
        ok("costly" in first.classes.get("slow", ""), "the slow plugin stands out")
        ok("idle" in first.classes.get("queue/discard", ""), "a plugin rejecting nothing stands out")
        rows2 = {r["name"]: r for r in second.rows}
        ok(rows2 and rows2["rej30"]["rejections"] != rows["rej30"]["rejections"],
           "page numbers change between two reads",
           repr(rows["rej30"]), repr(rows2.get("rej30")))
        after, _, _ = render_page(hport, k.tmp)
        rows3 = {r["name"]: r for r in after.rows}
        is_({n: float(rows3[n]["share"]) for n in MIX}, shares_of(tally),
            "page after the load: shares equal the client's")
        is_({n: int(rows3[n]["rejections"]) for n in MIX}, tally.by_plugin,
            "page after the load: rejections equal the client's")
    else:
        skip("headless chromium reads the page", "chromium not installed")

    # kill -9 of the worker: the supervisor restarts it, the counts stay
    # (a reload starts new workers in other slots: find the running one)
    live = running(stats(hport))
    ok(len(live) == 2, "two running workers after the reload", repr(live))
    old, slot = live[0]["pid"], live[0]["slot"]
    os.kill(old, signal.SIGKILL)
    ok(k.wait_log(r"worker %d ended \(signal 9\), restarting" % old), "worker killed")

    def replaced():
        pids = [w["pid"] for w in running(stats(hport))]
        return len(pids) == 2 and old not in pids
    ok(wait_for(replaced), "a new worker answers in its place")
    d = stats(hport)
    now = running(d)
    is_((d["workers"]["running"], [w["restarts"] for w in now if w["slot"] == slot]),
        (2, [1]), "two workers running, the killed one's slot restarted once")
    is_((len(d["workers"]["list"]), d["workers"]["configured"]), (4, 2),
        "listed: the four slots ever started (two retired by the reload), two configured")
    _, m = check_counts(hport, tally, "after kill -9 of the worker")
    is_(sorted(generation_series(m)), sorted(str(x["slot"]) for x in now),
        "/metrics: kasi_plugin_generation for the running workers only")
    is_(load(k.port, tally, 40), [], "phase 3: 40 sessions")
    d, m = check_counts(hport, tally, "phase 3")
    promtool(m, "phase 3")

    # kasi top, with the port the listener got
    res = run([KASI_BIN, "-c", k.confdir, "top"])
    like(res.stderr, r"kasi top: http\.listen in .* has port 0", "kasi top: port 0 is refused")
    topconf = os.path.join(k.tmp, "topconf")
    os.makedirs(topconf)
    with open(os.path.join(topconf, "smtp.yaml"), "w") as f:
        f.write("http:\n  listen: 127.0.0.1:%d\n  token: %s\n" % (hport, TOKEN))
    res = run([KASI_BIN, "-c", topconf, "top"])
    is_(res.returncode, 0, "kasi top exits 0")
    for n in ("rej30", "rej20", "rej10"):
        like(res.stdout, r"(?m)^%s\s+\d+\s+%d\s+%.1f%%" % (n, tally.by_plugin[n],
                                                           100 * shares_of(tally)[n]),
             "kasi top: %s's rejections and share" % n)
    like(res.stdout, r"messages: %d accepted, %d rejected, %d deferred, %d dropped"
         % tuple(tally.msgs.values()), "kasi top: the message counts")

    # the history file survives a restart
    k.stop()
    ok(os.path.exists(os.path.join(k.spool_dir, "kasi.stats")), "history saved at exit")
    k.start()
    hport = http_port(k)
    d = stats(hport)
    is_(d["messages"]["accepted"], 0, "after a restart: counters start again")
    is_({n: plugin(d, n)["window_rejections"] for n in MIX}, tally.by_plugin,
        "after a restart: the last hour still holds every rejection")
    is_(sum(d["series"]["accepted"]), tally.msgs["accepted"],
        "after a restart: accepted per minute kept")
    d24 = stats(hport, "24h")
    is_({n: sum(d24["series"]["deny"][n]) for n in MIX}, tally.by_plugin,
        "24 h range: the same rejections")
    d30 = stats(hport, "30d")
    is_(sum(d30["series"]["rejected"]) + sum(d30["series"]["accepted"]),
        tally.msgs["rejected"] + tally.msgs["accepted"], "30 d range: the same messages")

# kasi top against nothing
tmp = tempfile.mkdtemp(prefix="kasi-t-")
os.makedirs(os.path.join(tmp, "config"))
with open(os.path.join(tmp, "config", "smtp.yaml"), "w") as f:
    f.write("http:\n  listen: 127.0.0.1:1\n")
res = run([KASI_BIN, "-c", os.path.join(tmp, "config"), "top"])
ok(res.returncode == 1 and "kasi top: 127.0.0.1:1:" in res.stderr,
   "kasi top: nobody listening is a clear error", res.stderr)
with open(os.path.join(tmp, "config", "smtp.yaml"), "w") as f:
    f.write("listen: [\"127.0.0.1:0\"]\n")
res = run([KASI_BIN, "-c", os.path.join(tmp, "config"), "top"])
like(res.stderr, r"kasi top: no http\.listen in", "kasi top: no http section")
shutil.rmtree(tmp, ignore_errors=True)

done()
