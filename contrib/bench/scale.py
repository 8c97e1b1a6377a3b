#!/usr/bin/env python3
"""scale.py — what scale-out costs: messages per second through HAProxy
(PROXY v2) into one and two kasi nodes, against smtp-source straight into
kasi, and the price of the limit plugin per message with its windows in
kasi.counter (backend local) and in Redis (backend redis).

    contrib/bench/scale.py                 # prints a Markdown report
    BENCH_QUICK=1 contrib/bench/scale.py   # a few hundred messages
    BENCH_RESULTS=bench/RESULTS.md contrib/bench/scale.py
                                           # and replaces the report's
                                           # "Scale-out" section there

Everything runs on loopback and stops by itself: smtp-sink downstream,
kasi with queue/smtp_forward, haproxy (mode tcp, send-proxy-v2),
redis-server (no persistence), smtp-source as the load (one connection per
message). smtp.yaml limits.exempt is empty so the loopback load is
counted like any client. Settings: BENCH_RUNS (3), BENCH_MSGS (4000),
BENCH_MSGS1 (800, at one session), BENCH_SESSIONS (20), BENCH_SIZE (5120).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib as bl  # noqa: E402
import servers as sv  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
RUNS = int(os.environ.get("BENCH_RUNS") or (1 if QUICK else 3))
MSGS = int(os.environ.get("BENCH_MSGS") or (200 if QUICK else 4000))
MSGS1 = int(os.environ.get("BENCH_MSGS1") or (50 if QUICK else 800))
SESSIONS = int(os.environ.get("BENCH_SESSIONS") or 20)
SIZE = int(os.environ.get("BENCH_SIZE") or 5120)
KASI = os.environ.get("KASI_BIN") or os.path.join(sv.REPO, "build", "kasi")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

LIMIT_RULES = ("rates:\n  messages:\n    - {per: ip, max: 1000000000, period: 60}\n"
               "  recipients:\n    - {per: recipient, max: 1000000000, period: 60}\n")


def kasi_yaml(port, spool, proxy):
    listen = (f"  - address: 127.0.0.1:{port}\n    proxy_protocol: v2\n"
              f"    proxy_from: [127.0.0.1/32]\n" if proxy else f"  - 127.0.0.1:{port}\n")
    return (f"hostname: mx.bench.test\nlisten:\n{listen}"
            f"limits:\n  max_connections: 20000\n  max_connections_per_ip: 0\n  exempt: []\n"
            f"spool_dir: {spool}\nlog:\n  target: stderr\n  level: info\n"
            f"workers: 1\n"                      # one process, as bench.py's kasi
            + ("user: root\n" if os.geteuid() == 0 else ""))


# A plugin that times kasi.rates.add() in a loop, one window per call (what
# limit does at MAIL and again at RCPT): "RATEBENCH local|redis N".
RATEBENCH = """
local rates = require "kasi.rates"
local P = {}
local w = { ["local"] = rates.new("local", "bench:"), redis = rates.new("redis", "bench:") }
function P.hook_unrecognized_command(conn, txn, line)
  local kind, n = line:match("^RATEBENCH (%a+) (%d+)$")
  if not kind then return NEXT end
  local t0 = os.clock()
  local b = w[kind]
  for i = 1, tonumber(n) do
    local r, err = b:add { { key = "ip:192.0.2." .. (i % 250), window = 60 } }
    if not r then return OK, "error " .. tostring(err) end
  end
  return OK, string.format("cpu %.6f", os.clock() - t0)
end
return P
"""


def start_kasi(work, name, sink_port, proxy=False, limit=None, redis_port=None, bench=False):
    root = os.path.join(work, name)
    port = bl.free_port()
    files = sv.kasi_forward_files(sink_port)
    if limit:
        files["config/plugins"] = "limit\n" + files["config/plugins"]
        files["config/limit.yaml"] = f"backend: {limit}\n" + LIMIT_RULES
    if redis_port:
        files["config/redis.yaml"] = f"servers: [\"127.0.0.1:{redis_port}\"]\n"
    if bench:
        files["config/plugins"] = "ratebench\n" + files["config/plugins"]
        files["plugins/ratebench.lua"] = RATEBENCH
    files["config/smtp.yaml"] = kasi_yaml(port, os.path.join(root, "spool"), proxy)
    for rel, text in files.items():
        sv._write(os.path.join(root, rel), text)
    os.makedirs(os.path.join(root, "spool"), exist_ok=True)
    os.symlink(os.path.join(sv.REPO, "lua"), os.path.join(root, "lua"))
    for entry in os.listdir(os.path.join(sv.REPO, "plugins")):   # the tree's, beside ours
        dst = os.path.join(root, "plugins", entry)
        if not os.path.exists(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(os.path.join(sv.REPO, "plugins", entry), dst)
    log = os.path.join(root, "kasi.log")
    proc = bl.start([KASI, "-c", os.path.join(root, "config")], log, cwd=root)
    probe = None if proxy else port
    deadline = time.monotonic() + sv.START_TIMEOUT
    while time.monotonic() < deadline and "ready" not in open(log).read():
        time.sleep(0.05)
    if probe and not bl.wait_port(probe, proc, sv.START_TIMEOUT):
        raise sv.Skip("kasi did not start")
    return sv.Server(name, port, proc, root, log)


def start_haproxy(work, backends):
    port = bl.free_port()
    cfg = os.path.join(work, "haproxy-%d.cfg" % port)
    servers = "".join("    server n%d 127.0.0.1:%d send-proxy-v2\n" % (i, p)
                      for i, p in enumerate(backends))
    sv._write(cfg, "global\n    maxconn 4000\n    nbthread 1\n\ndefaults\n    mode tcp\n"
                   "    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\n"
                   f"frontend smtp\n    bind 127.0.0.1:{port}\n    default_backend kasi\n\n"
                   f"backend kasi\n    balance roundrobin\n{servers}")
    proc = bl.start([HAPROXY, "-db", "-f", cfg], cfg + ".log")
    if not bl.wait_port(port, proc, sv.START_TIMEOUT):
        raise sv.Skip("haproxy did not start")
    return sv.Server("haproxy", port, proc, work, cfg + ".log")


def start_redis(work):
    port = bl.free_port()
    d = os.path.join(work, "redis")
    os.makedirs(d, exist_ok=True)
    proc = bl.start([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", d], os.path.join(d, "redis.log"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            r = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True,
                               text=True, timeout=2)
            if r.stdout.strip() == "PONG":
                return sv.Server("redis", port, proc, d, os.path.join(d, "redis.log"))
        except (OSError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.05)
    raise sv.Skip("redis-server did not start")


def measure(entry_port, pids, sessions, count):
    """One smtp-source run; (msg/s, CPU-s of each pid's tree)."""
    before = [bl.cpu_seconds(p) for p in pids]
    wall, good, err = bl.smtp_source(entry_port, sessions, SIZE, count, 300)
    if not good:
        raise sv.Skip("smtp-source: " + err)
    return count / wall, [bl.cpu_seconds(p) - b for p, b in zip(pids, before)]


def scenarios(table, sessions, count):
    """Each (name, entry port, processes) RUNS times, alternating run by
    run; the medians."""
    rates = {t[0]: [] for t in table}
    cpus = {t[0]: [] for t in table}
    for _ in range(RUNS):
        for name, entry, procs in table:
            r, c = measure(entry, [p.pid for p in procs], sessions, count)
            rates[name].append(r)
            cpus[name].append([x * 10000 / count for x in c])
    out = []
    for name, entry, procs in table:
        cpu = [bl.median([c[i] for c in cpus[name]]) for i in range(len(procs))]
        out.append({"name": name, "rate": bl.median(rates[name]),
                    "cpu": dict(zip([p.name for p in procs], cpu))})
    return out


def row(s, base=None):
    cpu = " + ".join("%s %.2f" % (k, v) for k, v in s["cpu"].items())
    rel = "" if not base else "%3.0f%%" % (100 * s["rate"] / base["rate"])
    return "  %-34s %8s  %-44s %s" % (s["name"], format(int(s["rate"]), ","), cpu, rel)


def per_message_us(s, base, who):
    extra = sum(v for k, v in s["cpu"].items() if k.startswith(who)) - \
        sum(v for k, v in base["cpu"].items() if k.startswith(who))
    return extra * 100            # CPU-s per 10k messages -> microseconds per message


def ratebench(server, kind, n):
    """(wall us, kasi CPU us) per kasi.rates.add() call of one window."""
    import socket
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as c:
        f = c.makefile("rb")
        f.readline()
        t0 = time.monotonic()
        c.sendall(b"RATEBENCH %s %d\r\n" % (kind.encode(), n))
        line = f.readline().decode()
        wall = time.monotonic() - t0
        c.sendall(b"QUIT\r\n")
    m = re.search(r"cpu ([0-9.]+)", line)
    if not m:
        raise sv.Skip("ratebench: " + line.strip())
    return wall * 1e6 / n, float(m.group(1)) * 1e6 / n


def run(work):
    sink = sv.start_sink(work)
    red = start_redis(work)
    direct = start_kasi(work, "kasi-direct", sink.port)
    n1 = start_kasi(work, "kasi-n1", sink.port, proxy=True)
    n2 = start_kasi(work, "kasi-n2", sink.port, proxy=True)
    ha1 = start_haproxy(work, [n1.port])
    ha2 = start_haproxy(work, [n1.port, n2.port])
    loc = start_kasi(work, "kasi-limit-local", sink.port, limit="local")
    rds = start_kasi(work, "kasi-limit-redis", sink.port, limit="redis", redis_port=red.port)
    rb = start_kasi(work, "kasi-ratebench", sink.port, redis_port=red.port, bench=True)
    n = 2000 if QUICK else 20000
    micro = {kind: [ratebench(rb, kind, n) for _ in range(RUNS)] for kind in ("local", "redis")}
    red_cpu0 = bl.cpu_seconds(red.pid)
    ratebench(rb, "redis", n)
    micro["redis_server_us"] = (bl.cpu_seconds(red.pid) - red_cpu0) * 1e6 / n
    table = [
        ("kasi direct", direct.port, [direct]),
        ("HAProxy -> kasi (PROXY v2)", ha1.port, [ha1, n1]),
        ("HAProxy -> 2 kasi nodes", ha2.port, [ha2, n1, n2]),
        ("kasi + limit (local)", loc.port, [loc]),
        ("kasi + limit (redis)", rds.port, [rds, red]),
    ]
    out = {s: scenarios(table, s, count) for s, count in ((SESSIONS, MSGS), (1, MSGS1))}
    out["micro"] = micro
    return out


def report(out):
    lines = ["## Scale-out (contrib/bench/scale.py)", "",
             "- date: %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "- settings: runs=%d, msgs=%d (1 session: %d), size=%d" % (RUNS, MSGS, MSGS1, SIZE),
             "- machine: %d cores, load average %.1f at the end of the run" % (
                 os.cpu_count() or 0, os.getloadavg()[0]),
             "- versions: %s; %s; %s" % (
                 subprocess.run([KASI, "-V"], capture_output=True, text=True).stdout.strip(),
                 subprocess.run([HAPROXY, "-v"], capture_output=True, text=True).stdout.splitlines()[0],
                 subprocess.run([REDIS, "--version"], capture_output=True, text=True).stdout.split()[2]),
             "",
             "smtp-source (one connection per message, 5 KB) into kasi forwarding to",
             "smtp-sink. CPU is seconds per 10,000 messages of each process tree;",
             "% is the rate against kasi direct. The limit rows count two windows per",
             "message (messages per ip at MAIL, recipients per recipient at RCPT).",
             "Every process of the chain (smtp-source, HAProxy, the nodes, smtp-sink,",
             "redis-server) shares this machine's cores: HAProxy's own CPU comes out",
             "of kasi's throughput here, where on machines of their own a balancer",
             "costs a round trip, not a share of the node. With other work on the",
             "machine the rates are noisy; CPU per message and the per-call figures",
             "at the end are the steadier numbers.", "", "```"]
    micro = out.pop("micro")
    for s, res in out.items():
        lines.append("%d session%s x %d KB" % (s, "" if s == 1 else "s", SIZE // 1024))
        lines.append("  %-34s %8s  %-44s %s" % ("scenario", "msg/s", "CPU-s/10k", "rate"))
        for r in res:
            lines.append(row(r, res[0]))
        lim_l, lim_r, base = res[3], res[4], res[0]
        lines.append("  limit cost per message: local %.1f us CPU; redis %.1f us kasi CPU + "
                     "%.1f us Redis CPU, %.1f us more wall time per message at this load" % (
                         per_message_us(lim_l, base, "kasi"), per_message_us(lim_r, base, "kasi"),
                         lim_r["cpu"].get("redis", 0) * 100,
                         (1e6 / lim_r["rate"] - 1e6 / base["rate"])))
        lines.append("")
    lines.append("one window counted (kasi.rates.add, what limit does at MAIL and per RCPT),")
    lines.append("  in a loop inside one hook, median of %d runs:" % RUNS)
    for kind in ("local", "redis"):
        wall = bl.median([w for w, _ in micro[kind]])
        cpu = bl.median([c for _, c in micro[kind]])
        lines.append("  %-7s %7.1f us per call (wall), %6.1f us kasi CPU%s" % (
            kind, wall, cpu, ", %.1f us Redis CPU" % micro["redis_server_us"] if kind == "redis" else ""))
    lines += ["```", ""]
    return "\n".join(lines)


def replace_section(path, text):
    with open(path) as f:
        old = f.read()
    pat = re.compile(r"## Scale-out \(contrib/bench/scale\.py\).*?(?=\n## |\Z)", re.S)
    new = pat.sub(lambda m: text.rstrip() + "\n", old) if pat.search(old) else \
        old.rstrip() + "\n\n" + text
    with open(path, "w") as f:
        f.write(new)


def main():
    for tool in (KASI, HAPROXY, REDIS, bl.SMTP_SOURCE, sv.SMTP_SINK):
        if not os.access(tool, os.X_OK):
            print("skipped: %s not found" % tool)
            return 0
    work = tempfile.mkdtemp(prefix="kasi-scale-bench-")
    try:
        text = report(run(work))
    except sv.Skip as e:
        print("skipped: %s" % e)
        return 0
    finally:
        bl.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    print(text)
    if os.environ.get("BENCH_RESULTS"):
        replace_section(os.environ["BENCH_RESULTS"], text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
