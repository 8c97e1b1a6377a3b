"""report.py — the benchmark's result table and bench/RESULTS.md.

Both are made from the results dictionary that bench.py fills in:
  meta:  date, machine, versions, command, settings
  loads: [{label, rows: [{id, label, rate, cpu10k, ratio, note}]}]
  idle:  [{label, base_kib, points: [[n, kib]], per_conn, note}]
  large: [{label, mb, seconds, mb_s, hwm_growth_kib, note}]
  hook:  {ns, note}
"""


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
    yield "memory, idle connections (banner + EHLO, held open)"
    yield f"  {'server':<26}{'base MiB':>10}{'RSS at N (MiB)':>26}{'KiB/conn':>10}  note"
    for r in idle:
        pts = ", ".join(f"{n}: {kib / 1024:.1f}" for n, kib in r.get("points", []))
        base = None if r.get("base_kib") is None else r["base_kib"] / 1024
        yield (f"  {'idle ' + r['label']:<26}{_num(base, '{:.1f}'):>10}{pts or '-':>26}"
               f"{_num(r.get('per_conn'), '{:.2f}'):>10}  {r.get('note', '')}").rstrip()


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


def targets(res):
    """The goals of the benchmark issue, each with the measured figure."""
    fwd, chain = _row(res, 0, "kasi-fwd"), _row(res, 0, "kasi-chain")
    direct = _row(res, 0, "direct").get("rate")
    one = _row(res, 1, "kasi-fwd").get("rate")
    kasi_idle = next((r for r in res["idle"] if r["label"].startswith("kasi")), {})
    large = next(iter(res["large"]), {})
    pts = kasi_idle.get("points") or [[0, 0]]
    growth = large.get("hwm_growth_kib")
    return [
        "| target | measured | |", "|---|---|---|",
        _check("kasi forward >= 10x Haraka", fwd.get("ratio"), lambda v: v >= 10, "{:.1f}x"),
        _check("kasi forward >= 50% of direct",
               fwd["rate"] / direct if fwd.get("rate") and direct else None,
               lambda v: v >= 0.5, "{:.0%}"),
        _check("kasi forward <= 2 CPU-s/10k", fwd.get("cpu10k"), lambda v: v <= 2, "{:.2f}"),
        _check("kasi chain >= 8x Haraka chain", chain.get("ratio"), lambda v: v >= 8, "{:.1f}x"),
        _check("single session >= 1,000 msg/s", one, lambda v: v >= 1000, "{:,.0f}"),
        _check("<= 4 KiB per idle connection", kasi_idle.get("per_conn"),
               lambda v: v <= 4, "{:.2f}"),
        _check("<= 10 MiB base RSS",
               None if kasi_idle.get("base_kib") is None else kasi_idle["base_kib"] / 1024,
               lambda v: v <= 10, "{:.1f} MiB"),
        _check("10,000 idle connections on one worker", pts[-1][0] if kasi_idle.get("points") else None,
               lambda v: v >= 10000, "{:,}"),
        _check("large message >= 200 MB/s", large.get("mb_s"), lambda v: v >= 200, "{:.0f}"),
        _check("large message peak RSS growth <= 2 MB",
               None if growth is None else growth * 1024 / 1e6, lambda v: v <= 2, "{:.1f} MB"),
    ]


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
    pend = m.get("pending") or []
    if pend:
        head += ["## Not measured yet", ""] + [f"- {p}" for p in pend] + [""]
    return "\n".join(head)
