#!/usr/bin/env python3
"""bench.py — kasi against Haraka and Postfix's smtp-sink, on loopback.

Called by run.sh (make bench). Starts smtp-sink, dnsmasq, kasi in three
configurations and Haraka in two, then alternates smtp-source runs over
every scenario, measures idle-connection memory and one large message,
runs the hook-cost micro-benchmark if built, prints a table and writes
bench/RESULTS.md. Every run is bounded in count and time; every process
started here is stopped here. Settings come from the environment (see
contrib/bench/README.md).
"""
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import benchlib as bl
import report
import servers as sv
import tls_bench as tb
from servers import Skip

QUICK = os.environ.get("BENCH_QUICK") == "1"


def env_int(name, full, quick):
    return int(os.environ.get(name) or (quick if QUICK else full))


SET = {
    "runs": env_int("BENCH_RUNS", 3, 1),
    "sessions": env_int("BENCH_SESSIONS", 20, 20),
    "size": env_int("BENCH_SIZE", 5120, 5120),
    "msgs": env_int("BENCH_MSGS", 5000, 40),
    "msgs1": env_int("BENCH_MSGS1", 1000, 10),
    "msgs1_haraka": env_int("BENCH_MSGS1_HARAKA", 200, 10),
    "large_mb": env_int("BENCH_LARGE_MB", 50, 1),
    "run_timeout": env_int("BENCH_RUN_TIMEOUT", 300, 20),
    "deadline": env_int("BENCH_DEADLINE", 3600, 20),
}
IDLE = [int(x) for x in (os.environ.get("BENCH_IDLE")
                         or ("20" if QUICK else "1000,10000")).split(",") if x]
LEVEL = os.environ.get("BENCH_LOGLEVEL", "info")
T0 = time.monotonic()


def out(msg):
    print(msg, flush=True)


def time_left():
    return SET["deadline"] - (time.monotonic() - T0)


def kasi_bin():
    for p in (os.environ.get("KASI_BIN"), os.path.join(sv.REPO, "build", "kasi"),
              os.path.join(sv.REPO, "kasi")):
        if p and os.access(p, os.X_OK):
            return p
    sys.exit("kasi binary not found: run make, or set KASI_BIN")


def nostats_bin():
    """The build with the statistics compiled out (make nostats), or None."""
    p = os.environ.get("KASI_NOSTATS_BIN") or os.path.join(sv.REPO, "build-nostats", "kasi")
    return p if os.access(p, os.X_OK) else None


# ------------------------------------------------------------ setup ----

class Scenario:
    """One server under load. server None = smtp-source straight to the sink."""

    def __init__(self, sid, label, server=None, skip=None, counts="sink"):
        self.id, self.label, self.server, self.skip = sid, label, server, skip
        self.counts = counts          # where delivered messages are counted


def try_start(fn, *args, **kw):
    try:
        return fn(*args, **kw), None
    except Skip as e:
        return None, str(e)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"{type(e).__name__}: {e}"


def kasi_scenarios(kbin, work, sink, dns, dns_skip):
    scen = []
    miss = sv.kasi_missing(["queue/smtp_forward"])
    if miss:
        scen.append(Scenario("kasi-fwd", "kasi smtp_forward",
                             skip="missing plugins/queue/smtp_forward.lua"))
    else:
        srv, why = try_start(sv.start_kasi, kbin, "kasi-fwd", work,
                             sv.kasi_forward_files(sink.port), LEVEL)
        scen.append(Scenario("kasi-fwd", "kasi smtp_forward", srv, why))
    miss = sv.kasi_missing(sv.CHAIN + ["queue/smtp_forward"])
    if miss or dns is None:
        why = ("missing " + ", ".join(f"plugins/{m}.lua" for m in miss)) if miss else dns_skip
        scen.append(Scenario("kasi-chain", "kasi chain + forward", skip=why))
    else:
        srv, why = try_start(sv.start_kasi, kbin, "kasi-chain", work,
                             sv.kasi_chain_files(sink.port, dns.port), LEVEL)
        scen.append(Scenario("kasi-chain", "kasi chain + forward", srv, why))
    scen.append(nostats_scenario(scen[-1], work, sink, dns))
    srv, why = try_start(sv.start_kasi, kbin, "kasi-spool", work,
                         sv.kasi_spool_files(), LEVEL)
    scen.append(Scenario("kasi-spool", "kasi spool (fsync)", srv, why, "spool"))
    srv, why = try_start(sv.start_postfix_queue, work)
    scen.append(Scenario("postfix-queue", "Postfix queue (fsync)", srv, why, "postfix"))
    return scen


def nostats_scenario(chain, work, sink, dns):
    """The chain scenario again with the statistics compiled out, next to
    it so that the two alternate run by run: what the counters cost."""
    label = "statistics off"
    off = nostats_bin()
    if chain.skip:
        return Scenario("kasi-nostats", label, skip="as kasi chain + forward: " + chain.skip)
    if off is None:
        return Scenario("kasi-nostats", label,
                        skip="pending: build-nostats/kasi not built (make nostats)")
    srv, why = try_start(sv.start_kasi, off, "kasi-nostats", work,
                         sv.kasi_chain_files(sink.port, dns.port), LEVEL)
    return Scenario("kasi-nostats", label, srv, why)


def haraka_exe():
    mode = os.environ.get("BENCH_HARAKA", "auto")
    if mode == "0":
        return None, "BENCH_HARAKA=0"
    exe, why = try_start(sv.haraka_bin, install=(mode == "1" or not QUICK))
    return exe, why


def haraka_scenarios(exe, why, work, sink, dns, dns_skip):
    if exe is None:
        return [Scenario("haraka-fwd", "Haraka smtp_forward", skip=why),
                Scenario("haraka-chain", "Haraka chain + forward", skip=why)]
    srv, w = try_start(sv.start_haraka, exe, "haraka-fwd", work, sink.port,
                       level=LEVEL)
    scen = [Scenario("haraka-fwd", "Haraka smtp_forward", srv, w)]
    if dns is None:
        scen.append(Scenario("haraka-chain", "Haraka chain + forward", skip=dns_skip))
    else:
        srv, w = try_start(sv.start_haraka, exe, "haraka-chain", work, sink.port,
                           dns.port, level=LEVEL)
        scen.append(Scenario("haraka-chain", "Haraka chain + forward", srv, w))
    return scen


# ------------------------------------------------------- throughput ----

def delivered(sc, sink):
    if sc.counts == "spool":
        return sv.spool_count(sc.server)
    if sc.counts == "postfix":
        return sv.postfix_held(sc.server)
    return sv.sink_messages(sink)


def one_run(sc, sink, sessions, count):
    """One smtp-source run against a scenario: (rate, cpu10k) or raises Skip."""
    target = sc.server or sink
    before_n = delivered(sc, sink)
    cpu0 = bl.cpu_seconds(target.pid)
    wall, good, err = bl.smtp_source(target.port, sessions, SET["size"], count,
                                     min(SET["run_timeout"], max(5, time_left())))
    cpu1 = bl.cpu_seconds(target.pid)
    if not good:
        raise Skip(f"smtp-source failed: {err or 'exit status'}")
    time.sleep(0.05)
    got = delivered(sc, sink) - before_n
    if got < count:
        raise Skip(f"only {got} of {count} messages arrived")
    return count / wall, (cpu1 - cpu0) / count * 10000


def count_for(sc, sessions):
    if sessions > 1:
        return SET["msgs"]
    return SET["msgs1_haraka"] if sc.id.startswith("haraka") else SET["msgs1"]


def throughput(scen, sink, label, sessions):
    """Alternate the scenarios run by run; median per scenario."""
    samples = {sc.id: [] for sc in scen}
    notes = {sc.id: ("skipped: " + sc.skip) if sc.skip else "" for sc in scen}
    for run in range(SET["runs"]):
        for sc in scen:
            if notes[sc.id]:
                continue
            if time_left() < 5:
                notes[sc.id] = "stopped: BENCH_DEADLINE reached"
                continue
            try:
                samples[sc.id].append(one_run(sc, sink, sessions, count_for(sc, sessions)))
            except Skip as e:
                notes[sc.id] = "failed: " + str(e)
                if sc.server:
                    out(f"# {sc.label} log tail:\n{sc.server.log_tail(5)}")
        out(f"# {label}: run {run + 1}/{SET['runs']} done ({time.monotonic() - T0:.0f} s)")
    rows = []
    for sc in scen:
        s = samples[sc.id]
        rows.append({"id": sc.id, "label": sc.label, "note": notes[sc.id],
                     "rate": bl.median([x[0] for x in s]),
                     "cpu10k": bl.median([x[1] for x in s]),
                     "runs": len(s), "samples": s})
    add_ratios(rows)
    return {"label": label, "rows": rows}


def add_ratios(rows):
    by = {r["id"]: r for r in rows}
    pairs = {"kasi-fwd": "haraka-fwd", "kasi-chain": "haraka-chain",
             "kasi-spool": "haraka-fwd"}
    for k, h in pairs.items():
        if by.get(k, {}).get("rate") and by.get(h, {}).get("rate"):
            by[k]["ratio"] = by[k]["rate"] / by[h]["rate"]
    chain, off = by.get("kasi-chain", {}), by.get("kasi-nostats", {})
    if chain.get("rate") and off.get("rate"):
        off["cost"] = 100 * (off["rate"] - chain["rate"]) / off["rate"]
        extra = f"counting costs {off['cost']:.1f}% of msg/s"
        if chain.get("cpu10k") and off.get("cpu10k"):
            extra += f", {100 * (chain['cpu10k'] / off['cpu10k'] - 1):+.1f}% CPU per message"
        off["note"] = (off["note"] + " " + extra).strip()
    spool, pfq = by.get("kasi-spool", {}), by.get("postfix-queue", {})
    if spool.get("rate") and pfq.get("rate"):
        spool["note"] = (spool["note"] + f" {spool['rate'] / pfq['rate']:.1f}x Postfix queue").strip()
    direct = by.get("direct", {}).get("rate")
    fwd = by.get("kasi-fwd", {}).get("rate")
    if direct and fwd:
        extra = f"{100 * fwd / direct:.0f}% of direct"
        by["kasi-fwd"]["note"] = (by["kasi-fwd"]["note"] + " " + extra).strip()


# ----------------------------------------------------------- memory ----

def idle_memory(label, server, why, starttls=False):
    if server is None:
        return {"label": label, "note": "skipped: " + why}
    want = [n for n in IDLE if n > 0]
    argv = [sys.executable, os.path.join(sv.HERE, "idle_rss.py")] + \
        (["--starttls"] if starttls else []) + \
        [str(server.port), str(server.pid)] + [str(n) for n in want]
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=min(400, max(10, time_left())))
    except subprocess.TimeoutExpired:
        return {"label": label, "note": "failed: idle_rss.py timed out"}
    text = r.stdout.decode("utf-8", "replace")
    pts = [(int(m[0]), int(m[1]), int(m[2])) for m in
           re.findall(r"connections=(\d+) rss_before_kib=(\d+) rss_after_kib=(\d+)", text)]
    if not pts:
        return {"label": label, "note": "failed: " + text.strip()[-200:]}
    base = pts[0][1]
    last = pts[-1]
    closed = re.search(r"closed rss_kib=(\d+)", text)
    warm = re.search(r"warm rss_kib=(\d+)", text)
    note = "" if last[0] == want[-1] else f"only {last[0]} of {want[-1]} connections"
    return {"label": label, "base_kib": base, "points": [[p[0], p[2]] for p in pts],
            "per_conn": (last[2] - base) / max(last[0], 1), "note": note,
            "closed_kib": int(closed.group(1)) if closed else None,
            "warm_kib": int(warm.group(1)) if warm else None}


# ------------------------------------------------------------ large ----

def large_message(label, server, why, sc_counts, sink):
    """One message of large_mb through server, runs times: the median."""
    if server is None:
        return {"label": label, "note": "skipped: " + why}
    size = SET["large_mb"] * 1000 * 1000
    worker = bl.worker_pid(server.pid)
    hwm0 = bl.status_kib(worker, "VmHWM")
    probe = Scenario("large", label, server, counts=sc_counts)
    walls = []
    for _ in range(SET["runs"]):
        n0 = delivered(probe, sink)
        wall, good, err = bl.smtp_source(server.port, 1, size, 1,
                                         min(SET["run_timeout"], max(5, time_left())))
        time.sleep(0.05)
        if not good or delivered(probe, sink) - n0 < 1:
            return {"label": label, "note": "failed: " + (err or "message did not arrive")}
        walls.append(wall)
    hwm1 = bl.status_kib(worker, "VmHWM")
    wall = bl.median(walls)
    return {"label": label, "mb": size / 1e6, "seconds": wall, "mb_s": size / 1e6 / wall,
            "hwm_growth_kib": hwm1 - hwm0,
            "note": f"worker VmHWM {hwm0 / 1024:.1f} -> {hwm1 / 1024:.1f} MiB"}


def large_direct(sink):
    """The same message from smtp-source straight into smtp-sink."""
    size = SET["large_mb"] * 1000 * 1000
    walls = []
    for _ in range(SET["runs"]):
        wall, good, err = bl.smtp_source(sink.port, 1, size, 1,
                                         min(SET["run_timeout"], max(5, time_left())))
        if not good:
            return {"label": "smtp-sink direct", "note": "failed: " + err}
        walls.append(wall)
    wall = bl.median(walls)
    return {"label": "smtp-sink direct", "mb": size / 1e6, "seconds": wall,
            "mb_s": size / 1e6 / wall, "note": "no kasi: the two legs' own limit"}


# ------------------------------------------------------------- hook ----

def hook_cost():
    exe = os.path.join(sv.REPO, "build", "hook_cost")   # made by `make bench`
    if not os.access(exe, os.X_OK):
        return {"note": "pending: build/hook_cost not built (make build/hook_cost)"}
    try:
        r = subprocess.run([exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120, cwd=sv.REPO)
    except subprocess.TimeoutExpired:
        return {"note": "failed: hook_cost timed out"}
    text = r.stdout.decode("utf-8", "replace").strip()
    m = re.findall(r"([\d.]+)\s*ns", text)
    last = text.splitlines()[-1] if text else ""
    return {"ns": float(m[-1]) if m else None, "note": last[:120]}


# ------------------------------------------------------------- meta ----

def capture(argv):
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=10)
        return r.stdout.decode("utf-8", "replace").strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def meta(kbin, hexe):
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu": cpu_model(), "kernel": platform.release(),
        "kasi": capture([kbin, "-V"]).replace("kasi ", ""),
        "haraka": sv.haraka_version(hexe) if hexe else "not installed",
        "node": capture(["node", "--version"]) if shutil.which("node") else "-",
        "postfix": capture(["dpkg-query", "-W", "-f=${Version}", "postfix"]),
        "command": os.environ.get("BENCH_COMMAND") or "make bench",
        "note": os.environ.get("BENCH_NOTE", ""),
        "settings": ", ".join(f"{k}={v}" for k, v in SET.items())
        + f", idle={','.join(map(str, IDLE))}, log level={LEVEL}",
    }


def pending(res):
    rows = [r for load in res["loads"] for r in load["rows"]]
    rows += res["idle"] + res["large"] + [dict(res["hook"], label="hook cost")]
    seen, out_ = set(), []
    for r in rows:
        note = r.get("note", "")
        if note.startswith(("skipped", "pending", "failed")):
            line = f"{r['label']}: {note}"
            if line not in seen:
                seen.add(line)
                out_.append(line)
    return out_


# ------------------------------------------------------------- main ----

def main():
    kbin = kasi_bin()
    work = tempfile.mkdtemp(prefix="kasi-bench-")
    out(f"# kasi bench: {kbin}, work dir {work}, "
        + ", ".join(f"{k}={v}" for k, v in SET.items()))
    try:
        res = run_all(kbin, work)
    finally:
        bl.stop_all()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
    out("")
    out(report.table(res))
    dest = os.environ.get("BENCH_RESULTS") or ("" if QUICK else
                                                os.path.join(sv.REPO, "bench", "RESULTS.md"))
    if dest:
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        text = report.markdown(res)
        if os.path.exists(dest):        # keep the sections it does not write
            with open(dest) as f:
                text = report.merge(f.read(), text)
        with open(dest, "w") as f:
            f.write(text)
        out(f"# wrote {dest}")
    if os.environ.get("BENCH_JSON"):
        with open(os.environ["BENCH_JSON"], "w") as f:
            json.dump(res, f, indent=1)


def run_all(kbin, work):
    sink = sv.start_sink(work)
    dns, dns_skip = try_start(sv.start_dns, work)
    hexe, hwhy = haraka_exe()
    scen = [Scenario("direct", "smtp-sink direct")]
    scen += kasi_scenarios(kbin, work, sink, dns, dns_skip)
    scen += haraka_scenarios(hexe, hwhy, work, sink, dns, dns_skip)
    for sc in scen:
        out(f"# {sc.label}: " + (f"port {sc.server.port}, pid {sc.server.pid}"
                                 if sc.server else (sc.skip or f"port {sink.port}")))
    res = {"loads": [
        throughput(scen, sink, f"{SET['sessions']} sessions x {SET['size'] // 1024} KB",
                   SET["sessions"]),
        throughput([sc for sc in scen if sc.id != "kasi-nostats"], sink,
                   f"1 session x {SET['size'] // 1024} KB", 1)]}
    for sc in scen:
        if sc.server:
            bl.stop(sc.server.proc)
    res["tls"] = tls_phase(kbin, work, sink)
    res["workers"] = workers_phase(kbin, work, sink)
    res["idle"] = memory_phase(kbin, work, hexe, hwhy, sink)
    res["large"] = [large_phase(kbin, work, sink), large_direct(sink)]
    res["hook"] = hook_cost()
    res["meta"] = meta(kbin, hexe)
    res["meta"]["pending"] = pending(res)
    return res


def fresh_kasi(kbin, work, name, sink):
    """A new kasi forwarding to the sink, or spooling while it cannot."""
    if not sv.kasi_missing(["queue/smtp_forward"]):
        srv, why = try_start(sv.start_kasi, kbin, name, work,
                             sv.kasi_forward_files(sink.port), LEVEL)
        return srv, why, "sink", "forward"
    srv, why = try_start(sv.start_kasi, kbin, name, work, sv.kasi_spool_files(), LEVEL)
    return srv, why, "spool", "spool"


def memory_phase(kbin, work, hexe, hwhy, sink):
    rows = []
    srv, why, _, mode = fresh_kasi(kbin, work, "kasi-idle", sink)
    rows.append(idle_memory(f"kasi ({mode})", srv, why))
    bl.stop(srv.proc if srv else None)
    srv, why = kasi_tls(kbin, work, "kasi-idle-tls", sink, "starttls", ["rsa", "ecdsa"])
    rows.append(idle_memory("kasi STARTTLS", srv, why, starttls=True))
    bl.stop(srv.proc if srv else None)
    if hexe:
        srv, why = try_start(sv.start_haraka, hexe, "haraka-idle", work, sink.port,
                             level=LEVEL)
    else:
        srv, why = None, hwhy
    rows.append(idle_memory("Haraka", srv, why))
    bl.stop(srv.proc if srv else None)
    return rows


CERTS = {}


def kasi_tls(kbin, work, name, sink, mode, keys):
    """kasi forwarding to the sink with a TLS listener (mode starttls or
    implicit) and the certificates named in keys ("rsa", "ecdsa")."""
    if not CERTS:
        try:
            CERTS.update(sv.make_certs(work))
        except (Skip, OSError, subprocess.SubprocessError) as e:
            return None, f"certificates: {e}"
    return try_start(sv.start_kasi, kbin, name, work, sv.kasi_forward_files(sink.port),
                     LEVEL, listen_tls=mode, certs=[CERTS[k] for k in keys])


def handshake_rows():
    """Full handshakes: kasi (implicit TLS) and openssl s_server, per key."""
    secs = 1 if QUICK else 5
    rows = []
    for key in ("rsa", "ecdsa"):
        srv, why = kasi_tls(KBIN[0], WORK[0], "kasi-hs-" + key, SINK[0], "implicit", [key])
        row = {"label": f"kasi {key.upper()}", "note": "" if srv else "skipped: " + why}
        if srv:
            got, why = tb.s_time(srv.port, srv.pid, secs)
            row.update(zip(("rate", "per_cpu"), got) if got else {"note": "failed: " + why})
            bl.stop(srv.proc)
        ref = {"label": f"s_server {key.upper()}", "note": ""}
        proc, port = tb.start_s_server(WORK[0], "s_server-" + key, *CERTS.get(key, ("", "")))
        if proc:
            got, why = tb.s_time(port, proc.pid, secs)
            ref.update(zip(("rate", "per_cpu"), got) if got else {"note": "failed: " + why})
            bl.stop(proc)
        else:
            ref["note"] = "skipped: s_server did not start"
        if row.get("per_cpu") and ref.get("per_cpu"):
            row["note"] = f"{100 * row['per_cpu'] / ref['per_cpu']:.0f}% of s_server per CPU-s"
        rows += [row, ref]
    return rows


def starttls_rows(kbin, work, sink):
    """The same Python load with and without STARTTLS, alternated."""
    srv, why = kasi_tls(kbin, work, "kasi-starttls", sink, "starttls", ["rsa", "ecdsa"])
    if srv is None:
        return [{"label": "kasi STARTTLS", "note": "skipped: " + why}]
    count = 40 if QUICK else SET["msgs"] // 2
    samples = {False: [], True: []}
    note = ""
    for _ in range(SET["runs"]):
        for tls in (False, True):
            got, why = tb.load(srv.port, srv.pid, tls, SET["sessions"], SET["size"], count,
                               min(SET["run_timeout"], max(5, time_left())))
            if got:
                samples[tls].append(got)
            else:
                note = "failed: " + why
    bl.stop(srv.proc)
    rows = []
    for tls, label in ((False, "kasi plain (same client)"), (True, "kasi STARTTLS")):
        s = samples[tls]
        rows.append({"label": label, "rate": bl.median([x[0] for x in s]),
                     "cpu10k": bl.median([x[1] for x in s]), "note": note})
    if rows[0]["rate"] and rows[1]["rate"]:
        rows[1]["note"] = (rows[1]["note"] + f" {100 * rows[1]['rate'] / rows[0]['rate']:.0f}%"
                           " of plain (RSA+ECDSA pair; ECDSA chosen)").strip()
    return rows


KBIN, WORK, SINK = [None], [None], [None]


def tls_phase(kbin, work, sink):
    KBIN[0], WORK[0], SINK[0] = kbin, work, sink
    srv, why = kasi_tls(kbin, work, "kasi-tls-check", sink, "implicit", ["rsa"])
    if srv is None:
        return {"handshakes": [{"label": "kasi TLS", "note": "skipped: " + why}], "load": []}
    bl.stop(srv.proc)
    return {"handshakes": handshake_rows(), "load": starttls_rows(kbin, work, sink)}


def workers_phase(kbin, work, sink):
    """kasi smtp_forward with 1 and 2 worker processes (20 sessions)."""
    rows = []
    for n in (1, 2):
        srv, why = try_start(sv.start_kasi, kbin, f"kasi-w{n}", work,
                             sv.kasi_forward_files(sink.port), LEVEL, workers=n)
        sc = Scenario(f"kasi-w{n}", f"kasi smtp_forward, workers: {n}", srv, why)
        rows.append(sc)
    res = throughput(rows, sink, f"workers, {SET['sessions']} sessions x "
                     f"{SET['size'] // 1024} KB", SET["sessions"])
    for sc in rows:
        bl.stop(sc.server.proc if sc.server else None)
    return res


def large_phase(kbin, work, sink):
    srv, why, counts, mode = fresh_kasi(kbin, work, "kasi-large", sink)
    row = large_message(f"kasi ({mode})", srv, why, counts, sink)
    bl.stop(srv.proc if srv else None)
    return row


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except KeyboardInterrupt:
        bl.stop_all()
        sys.exit(130)
