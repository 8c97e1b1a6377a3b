"""report.py — the benchmark's result table and bench/RESULTS.md.

Both are made from the results dictionary that bench.py fills in:
  meta:  date, machine, versions, command, settings
  loads: [{label, rows: [{id, label, rate, cpu10k, ratio, cost, note}]}]
         (cost: on the "statistics off" row, % of msg/s the counters cost)
  idle:  [{label, base_kib, points: [[n, kib]], per_conn, closed_kib, warm_kib, note}]
  large: [{label, mb, seconds, mb_s, hwm_growth_kib, note}]
  hook:  {ns, note}
  tls:   {handshakes: [{label, rate, per_cpu, note}],
          load: [{label, rate, cpu10k, note}]}
  workers: a load like those of loads (kasi with 1 and 2 workers)
"""
import re


def _num(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)


def _ratio(v):
    return "-" if v is None else f"{v:.1f}x"


def throughput_lines(load):
    yield f"throughput, {load['label']}"
    yield f"  {'scenario':<26}{'msg/s':>10}{'CPU-s/10k':>11}{'vs Haraka':>11}  note"
    for r in load["rows"]:
        yield (f"  {r['label']:<26}{_num(r.get('rate')):>10}"
               f"{_num(r.get('cpu10k'), '{:.2f}'):>11}{_ratio(r.get('ratio')):>11}"
               f"  {r.get('note', '')}").rstrip()


def idle_lines(idle):
    yield "memory, idle connections (banner + EHLO, held open; STARTTLS: EHLO again inside TLS)"
    yield (f"  {'server':<26}{'base MiB':>10}{'warm MiB':>10}{'RSS at N (MiB)':>34}"
           f"{'KiB/conn':>10}{'closed MiB':>12}  note")
    for r in idle:
        pts = ", ".join(f"{n}: {kib / 1024:.1f}" for n, kib in r.get("points", []))
        base = None if r.get("base_kib") is None else r["base_kib"] / 1024
        closed = None if r.get("closed_kib") is None else r["closed_kib"] / 1024
        warm = None if r.get("warm_kib") is None else r["warm_kib"] / 1024
        yield (f"  {'idle ' + r['label']:<26}{_num(base, '{:.1f}'):>10}{_num(warm, '{:.1f}'):>10}"
               f"{pts or '-':>34}"
               f"{_num(r.get('per_conn'), '{:.2f}'):>10}{_num(closed, '{:.1f}'):>12}"
               f"  {r.get('note', '')}").rstrip()


def tls_lines(tls):
    yield "TLS, full handshakes (openssl s_time -new; kasi on an implicit-TLS port, s_server = openssl s_server)"
    yield f"  {'server':<26}{'hs/s':>10}{'hs/CPU-s':>11}  note"
    for r in tls.get("handshakes", []):
        yield (f"  {'handshake ' + r['label']:<26}{_num(r.get('rate')):>10}"
               f"{_num(r.get('per_cpu')):>11}  {r.get('note', '')}").rstrip()
    yield ""
    yield "TLS, messages (the Python client of tls_bench.py, one connection per message)"
    yield f"  {'scenario':<26}{'msg/s':>10}{'CPU-s/10k':>11}  note"
    for r in tls.get("load", []):
        yield (f"  {r['label']:<26}{_num(r.get('rate')):>10}"
               f"{_num(r.get('cpu10k'), '{:.2f}'):>11}  {r.get('note', '')}").rstrip()


def large_lines(large):
    yield "large message"
    yield f"  {'server':<26}{'MB':>6}{'seconds':>9}{'MB/s':>8}{'peak RSS growth KiB':>21}  note"
    for r in large:
        yield (f"  {'large ' + r['label']:<26}{_num(r.get('mb'), '{:.0f}'):>6}"
               f"{_num(r.get('seconds'), '{:.2f}'):>9}{_num(r.get('mb_s'), '{:.0f}'):>8}"
               f"{_num(r.get('hwm_growth_kib')):>21}  {r.get('note', '')}").rstrip()


def hook_lines(hook):
    yield "Lua hook call"
    yield (f"  {'hook cost':<26}{_num(hook.get('ns'), '{:.0f}'):>10} ns/call"
           f"  {hook.get('note', '')}").rstrip()


def table(res):
    out = []
    for load in res["loads"]:
        out += list(throughput_lines(load)) + [""]
    if res.get("tls"):
        out += list(tls_lines(res["tls"])) + [""]
    if res.get("workers"):
        out += list(throughput_lines(res["workers"])) + [""]
    out += list(idle_lines(res["idle"])) + [""]
    out += list(large_lines(res["large"])) + [""]
    out += list(hook_lines(res["hook"]))
    return "\n".join(out)


def _row(res, load_idx, sid):
    try:
        return next(r for r in res["loads"][load_idx]["rows"] if r["id"] == sid)
    except (IndexError, StopIteration):
        return {}


def _check(name, value, good, fmt):
    if value is None:
        return f"| {name} | not measured | - |"
    return f"| {name} | {fmt.format(value)} | {'met' if good(value) else 'MISSED'} |"


def _find(rows, prefix):
    return next((r for r in rows if r.get("label", "").startswith(prefix)), {})


def targets(res):
    """The goals of the benchmark issues, each with the measured figure."""
    fwd, chain = _row(res, 0, "kasi-fwd"), _row(res, 0, "kasi-chain")
    nostats = _row(res, 0, "kasi-nostats")
    spool, pfq = _row(res, 0, "kasi-spool"), _row(res, 0, "postfix-queue")
    direct = _row(res, 0, "direct").get("rate")
    one = _row(res, 1, "kasi-fwd").get("rate")
    kasi_idle = next((r for r in res["idle"] if r["label"].startswith("kasi (")), {})
    tls_idle = _find(res["idle"], "kasi STARTTLS")
    large = next(iter(res["large"]), {})
    pts = kasi_idle.get("points") or [[0, 0]]
    growth = large.get("hwm_growth_kib")
    hs = (res.get("tls") or {}).get("handshakes", [])
    tload = (res.get("tls") or {}).get("load", [])

    def share(key):
        k, o = _find(hs, "kasi " + key), _find(hs, "s_server " + key)
        return k["per_cpu"] / o["per_cpu"] if k.get("per_cpu") and o.get("per_cpu") else None

    closed = (tls_idle["closed_kib"] / tls_idle["base_kib"] - 1
              if tls_idle.get("closed_kib") and tls_idle.get("base_kib") else None)
    closed_warm = (tls_idle["closed_kib"] / tls_idle["warm_kib"] - 1
                   if tls_idle.get("closed_kib") and tls_idle.get("warm_kib") else None)
    plain, stls = _find(tload, "kasi plain"), _find(tload, "kasi STARTTLS")
    return [
        "| target | measured | |", "|---|---|---|",
        _check("kasi forward >= 10x Haraka", fwd.get("ratio"), lambda v: v >= 10, "{:.1f}x"),
        _check("kasi forward >= 50% of direct",
               fwd["rate"] / direct if fwd.get("rate") and direct else None,
               lambda v: v >= 0.5, "{:.0%}"),
        _check("kasi forward <= 2 CPU-s/10k", fwd.get("cpu10k"), lambda v: v <= 2, "{:.2f}"),
        _check("kasi chain >= 15x Haraka chain", chain.get("ratio"), lambda v: v >= 15, "{:.1f}x"),
        _check("statistics cost <= 3 % (chain, on vs off)", nostats.get("cost"),
               lambda v: v <= 3, "{:.1f} %"),
        _check("single session >= 1,000 msg/s", one, lambda v: v >= 1000, "{:,.0f}"),
        _check("spool (fsync) >= 4,000 msg/s at 20 sessions", spool.get("rate"),
               lambda v: v >= 4000, "{:,.0f}"),
        _check("spool >= 4x Postfix's queue",
               spool["rate"] / pfq["rate"] if spool.get("rate") and pfq.get("rate") else None,
               lambda v: v >= 4, "{:.1f}x"),
        _check("<= 4 KiB per idle connection", kasi_idle.get("per_conn"),
               lambda v: v <= 4, "{:.2f}"),
        _check("<= 12 KiB per idle STARTTLS connection", tls_idle.get("per_conn"),
               lambda v: v <= 12, "{:.2f}"),
        _check("STARTTLS RSS after close within 10% of base", closed,
               lambda v: v <= 0.10, "{:+.0%}"),
        _check("(the same against the base after one session)", closed_warm,
               lambda v: v <= 0.10, "{:+.0%}"),
        _check("<= 10 MiB base RSS",
               None if kasi_idle.get("base_kib") is None else kasi_idle["base_kib"] / 1024,
               lambda v: v <= 10, "{:.1f} MiB"),
        _check("10,000 idle connections on one worker", pts[-1][0] if kasi_idle.get("points") else None,
               lambda v: v >= 10000, "{:,}"),
        _check("handshakes RSA >= 80% of s_server (per CPU-s)", share("RSA"),
               lambda v: v >= 0.8, "{:.0%}"),
        _check("handshakes ECDSA >= 80% of s_server (per CPU-s)", share("ECDSA"),
               lambda v: v >= 0.8, "{:.0%}"),
        _check("STARTTLS msg/s next to plain (same client)",
               stls["rate"] / plain["rate"] if stls.get("rate") and plain.get("rate") else None,
               lambda v: True, "{:.0%}"),
        _check("large message >= 250 MB/s", large.get("mb_s"), lambda v: v >= 250, "{:.0f}"),
        _check("large message peak RSS growth <= 2 MB",
               None if growth is None else growth * 1024 / 1e6, lambda v: v <= 2, "{:.1f} MB"),
    ]


def projection(res):
    """Workers: what 1 and 2 processes did here, and 16 cores by that."""
    rows = {r["id"]: r for r in (res.get("workers") or {}).get("rows", [])}
    w1, w2 = rows.get("kasi-w1", {}), rows.get("kasi-w2", {})
    if not w1.get("rate") or not w1.get("cpu10k"):
        return []
    per_core = 10000 / w1["cpu10k"]
    out = ["## Workers: projection to 16 cores", "",
           f"One worker: {w1['rate']:,.0f} msg/s at {w1['cpu10k']:.2f} CPU-s per 10k "
           f"messages, so one core of kasi work carries about {per_core:,.0f} msg/s."]
    if w2.get("rate") and w2.get("cpu10k"):
        out.append(f"Two workers: {w2['rate']:,.0f} msg/s at {w2['cpu10k']:.2f} CPU-s/10k "
                   f"({w2['rate'] / w1['rate']:.2f}x one worker; on this box the two workers "
                   "share 2 cores with smtp-source and smtp-sink, so the rate cannot double).")
        per_core = 10000 / w2["cpu10k"]
    out += ["", f"Projection for 16 cores with `workers: 16`: about {16 * per_core:,.0f} msg/s "
            "(16 x 10,000 / CPU-s per 10k of the widest measured run).",
            "Basis: kasi's own CPU per message stays what it is here (the workers share",
            "nothing on the message path but the listening socket and the counters in",
            "shared memory), the load generator and the downstream run on other",
            "machines, and the network and the downstream MTA keep up; a real deployment",
            "adds DNS, plugin and TLS work per message, which divides the figure by the",
            "ratio of its CPU-s/10k to this one.", ""]
    return out


def markdown(res):
    m = res["meta"]
    head = [
        "# kasi benchmark results",
        "",
        f"**{m['note']}**" if m.get("note") else "",
        "",
        f"- date: {m['date']}",
        f"- machine: {m['nproc']} cores, {m['cpu']}, Linux {m['kernel']}",
        f"- versions: kasi {m['kasi']}, Haraka {m['haraka']}, node {m['node']}, "
        f"postfix (smtp-source/smtp-sink) {m['postfix']}",
        f"- command: `{m['command']}`",
        f"- settings: {m['settings']}",
        "",
        "All traffic on loopback. smtp-source opens one connection per message;",
        "msg/s is the median of the runs, scenarios alternate run by run.",
        "CPU-s/10k is user+system CPU of the server process tree (not the",
        "load generator, not the sink) per 10,000 messages. \"vs Haraka\" is",
        "kasi's rate over Haraka's in the same configuration (for the spool",
        "row: over Haraka forwarding, which is different work).",
        "",
        "```",
        table(res),
        "```",
        "",
    ]
    head += ["## Against the targets", "",
             "kasi rows: forwarding when queue/smtp_forward exists; memory and",
             "large-message rows use whichever queue ran (see the table).", ""]
    head += targets(res) + [""]
    head += projection(res)
    pend = m.get("pending") or []
    if pend:
        head += ["## Not measured yet", ""] + [f"- {p}" for p in pend] + [""]
    return "\n".join(head)


# The sections markdown() writes; every other "## " section of an existing
# RESULTS.md (written by hand, or by scale.py and soak.py) is kept.
GENERATED = ("## Against the targets", "## Workers: projection to 16 cores",
             "## Not measured yet")


def merge(old, new):
    """new (markdown()'s text) followed by the sections of old it does not
    write, in their order."""
    parts = re.split(r"(?m)^(?=## )", old)[1:]
    kept = [p for p in parts if not p.startswith(GENERATED)]
    return new.rstrip("\n") + "\n\n" + "".join(kept) if kept else new
