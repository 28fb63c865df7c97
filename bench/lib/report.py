#!/usr/bin/python3
"""report.py WORKDIR OUT_MD OUT_SVG: bench/run.sh's raw numbers -> results.md and chart.svg.

Reads WORKDIR/times.tsv (name, tool, seconds, max RSS KiB | FAIL, reason), WORKDIR/bytes.tsv
(name, tool, key, value) and WORKDIR/meta.json (corpus, versions, machine)."""
import json, os, statistics, sys
from collections import defaultdict
from html import escape

W, OUT_MD, OUT_SVG = sys.argv[1:4]
meta = json.load(open(os.path.join(W, "meta.json")))
times = defaultdict(lambda: defaultdict(list))  # name -> tool -> [(s, kib) | None]
fails = {}
order = []
for line in open(os.path.join(W, "times.tsv")):
    f = line.rstrip("\n").split("\t")
    name, tool = f[0], f[1]
    if name not in order:
        order.append(name)
    if f[2] == "FAIL":
        times[name][tool].append(None); fails[(name, tool)] = f[3] if len(f) > 3 else "?"
    else:
        times[name][tool].append((float(f[2]), int(f[3])))
notes = defaultdict(dict)
for line in open(os.path.join(W, "bytes.tsv")):
    name, tool, key, val = line.rstrip("\n").split("\t", 3)
    notes[(name, tool)][key] = val

MB = 1e6
def mb(b):
    return f"{b/MB:.2f} MB" if b >= 100_000 else f"{b/1000:.1f} kB"
def pipe(s):
    return s.replace('|', '\\|')
def med(name, tool):
    v = times.get(name, {}).get(tool)
    if not v or any(x is None for x in v):
        return None
    return statistics.median(x[0] for x in v), statistics.median(x[1] for x in v) / 1024
def cell(name, tool):
    v = times.get(name, {}).get(tool)
    if not v:
        return "–"
    if any(x is None for x in v):
        return f"failed: {escape(fails.get((name, tool), '?'))}"
    e = sorted(x[0] for x in v)
    m = statistics.median(x[1] for x in v) / 1024
    return f"{statistics.median(e):.2f} [{e[0]:.2f}–{e[-1]:.2f}] s, {m:.0f} MiB"

TARGETS = [  # (name prefix, target ratio)
    ("export → oci: (gzip)", 0.5), ("export → containers-storage:", 0.3),
    ("unencapsulate oci: (our image)", 0.5), ("image pull oci: → fresh", 0.5),
    ("unencapsulate containers-storage:", 0.5), ("image pull containers-storage: → fresh", 0.5),
    ("image pull derived over present base", 0.15),
]
def target(name):
    return next((t for p, t in TARGETS if name.startswith(p)), None)

L = [f"# Benchmark: ostree-bridge vs ostree-ext {meta['peer_version']}", ""]
L += [f"- Corpus: {meta['corpus']}; {meta['v2']}.",
      f"- Synthetic trees (deterministic, seed 42; 40 % of the bytes in 0.5–32 KiB text files, the "
      f"rest in 16 large half-text half-noise files): {', '.join(m + ' MiB' for m in meta['synth'])}.",
      f"- {meta['runs']} runs each, ours and the peer alternating (ours first on odd runs); wall time "
      "median [min–max], peak RSS median (GNU time: the largest process of the command's tree, "
      "skopeo included). Ratios are ours/peer medians from this one run.",
      f"- Machine: {meta['machine']}. Shared with other jobs during the run: compare ratios, "
      "not absolute times; spreads under ~25 % are noise.",
      f"- Versions: {meta['versions']}.", ""]

# 1. Times.
L += ["## Time and memory", "",
      "| benchmark | ostree-bridge | peer (ostree-ext) | ratio | target | |",
      "| --- | --- | --- | --- | --- | --- |"]
chart_rows = []
mem_ok = []
for name in order:
    t = times[name]
    if "floor" in t:
        continue
    a, b = med(name, "ours"), med(name, "peer")
    r = a[0] / b[0] if a and b else None
    tg = target(name)
    verdict = "" if r is None or tg is None else ("met" if r <= tg else "**missed**")
    if a and b:
        mem_ok.append((name, a[1], b[1]))
        chart_rows.append((name, a[0], b[0]))
    elif a:
        chart_rows.append((name, a[0], None))
    L.append(f"| {pipe(name)} | {cell(name, 'ours')} | {cell(name, 'peer')} | "
             f"{f'{r:.2f}×' if r else '–'} | {f'≤ {tg}×' if tg else ''} | {verdict} |")
L.append("")
bad = [(n, a, b) for n, a, b in mem_ok if a > b + 20]
L.append("Memory target (ours ≤ peer + 20 MiB): " + ("met on every row." if not bad else
         "**missed** on " + "; ".join(f"{n} ({a:.0f} vs {b:.0f} MiB)" for n, a, b in bad) + "."))
L.append("")

# 2. Bytes read by pulls that should read little.
L += ["## Bytes read", "", "| pull | ostree-bridge | peer |", "| --- | --- | --- |"]
dl = notes.get(("derived image", "any"), {}).get("layers")
if dl:
    tail, n, tot = dl.split()
    L.append(f"| (derived image: {n} layers, {int(tot)/MB:.1f} MB; layers added by `podman build`: "
             f"{int(tail)/MB:.2f} MB) | | |")
for name in order:
    o, p = notes.get((name, "ours"), {}), notes.get((name, "peer"), {})
    if "fetched" not in o and "summary" not in p and "fetched" not in p:
        continue
    oc = "–"
    if "fetched" in o:
        f = o["fetched"].split()
        oc = f"{mb(int(f[0]))}, {f[1]} of {f[2]} layers" + (f" (read via {f[3]})" if len(f) > 3 else "")
    pc = []
    if "fetched" in p:
        f = p["fetched"].split(); pc.append(f"{mb(int(f[0]))}, {f[1]} of {f[2]} layers")
    if p.get("summary"):
        pc.append(f"its summary: “{escape(p['summary'].strip())}”")
    L.append(f"| {name} | {oc} | {'; '.join(pc) or '–'} |")
L.append("")

# 3. Update sizes.
floor = int(notes.get(("update floor", "floor"), {}).get("bytes", "0"))
nfiles = notes.get(("update floor", "floor"), {}).get("files", "?")
fl = notes.get(("update floor", "floor"), {})
pkgfloor = int(fl.get("pkgbytes", "0"))
if pkgfloor:
    pk_line = [f"Package-granular floor (every file of the {fl.get('pkgs', '?')} packages owning a changed file — an "
          f"/etc edit counts for its package — plus the changed files no package owns, tar | gzip -6): "
          f"**{mb(pkgfloor)}**: what layers that never split a package must carry at least.", ""]
L += ["## Update v1 → v2: bytes a pull fetches, by layer budget", "",
      f"Floor: the {nfiles} files v2 adds or changes, tar | gzip -6: **{mb(floor)}**. "
      "Each cell: bytes of v2's layers that v1 lacks (what `image pull` fetches into a repo holding v1), "
      "× the floor, and v2's layer count. Without prior = v2 built on its own; with prior = "
      "v2 built with the previous build's layout (ours `--prior-build`, the peer `--prior-manifest`; "
      "the peer gets `--contentmeta` from the dpkg database).", ""] + (pk_line if pkgfloor else []) + [
      "| layers ≤ | ours, without prior | ours, with prior | peer, without prior | peer, with prior |",
      "| --- | --- | --- | --- | --- |"]
def ub(n, tool, key):
    v = notes.get((f"update {n}", tool), {})
    if key in v:
        b, k, nl, _ = (v[key].split() + ["0"] * 4)[:4]
        return int(b), f"{mb(int(b))} ({int(b)/floor:.2f}×, {nl} layers)" if floor else mb(int(b))
    if "error" in v or ("error-prior" in v and key == "prior"):
        return None, "failed: " + escape(v.get("error") or v.get("error-prior"))
    return None, "–"
upd_chart = []
for n in meta["budgets"]:
    row = [ub(n, t, k) for t, k in (("ours", "noprior"), ("ours", "prior"), ("peer", "noprior"), ("peer", "prior"))]
    upd_chart.append((n, [x[0] for x in row]))
    L.append(f"| {n} | " + " | ".join(x[1] for x in row) + " |")
cli = notes.get(("update cli", "peer"), {}).get("noprior")
if cli:
    b, k, nl, _ = cli.split()[:4]
    L.append(f"| peer CLI as shipped | | | {mb(int(b))} ({int(b)/floor:.2f}×, {nl} layers) | |")
nb = 64 if 64 in meta["budgets"] else meta["budgets"][-1]
o64 = ub(nb, "ours", "prior")[0]
if o64 and floor:
    L += ["", f"Target (≤ 64 layers, prior layout: ≤ 1.15× the floor): {o64/floor:.2f}× at ≤ {nb} layers — "
          + ("met." if o64 / floor <= 1.15 else "**missed**.")
          + (f" Against the package-granular floor: {o64/pkgfloor:.2f}×." if pkgfloor else "")]
L.append("")

# 4. Scale.
sizes = meta["synth"]
if len(sizes) >= 2:
    s0, s1 = sizes[0], sizes[-1]
    L += ["## Scale: synthetic trees", "",
          f"Slope = (time at {s1} MiB − time at {s0} MiB) / (size difference in GB); memory at both sizes.", "",
          "| benchmark | tool | " + f"{s0} MiB | {s1} MiB | slope (s/GB) | peak RSS {s0} → {s1} MiB |",
          "| --- | --- | --- | --- | --- | --- |"]
    for what in ("export → oci: (gzip)", "unencapsulate oci: → fresh repo", "tar | sha256sum", "tar | gzip -6", "ostree commit"):
        for tool in ("ours", "peer", "floor"):
            n0 = next((n for n in order if n.startswith(f"synthetic {s0} MiB: {what}") or n == f"floor (synthetic {s0} MiB): {what}"), None)
            n1 = next((n for n in order if n.startswith(f"synthetic {s1} MiB: {what}") or n == f"floor (synthetic {s1} MiB): {what}"), None)
            if not n0 or not n1:
                continue
            a, b = med(n0, tool), med(n1, tool)
            if not a or not b:
                if times[n0].get(tool):
                    L.append(f"| {pipe(what)} | {tool} | {cell(n0, tool)} | {cell(n1, tool)} | – | – |")
                continue
            gb = (int(s1) - int(s0)) * 2**20 / 1e9
            L.append(f"| {pipe(what)} | {tool} | {a[0]:.2f} s | {b[0]:.2f} s | "
                     f"{(b[0]-a[0])/gb:.1f} | {a[1]:.0f} → {b[1]:.0f} MiB |")
    L.append("")

# 5. Floors.
L += ["## Floors (same data)", "", "| floor | time, peak RSS |", "| --- | --- |"]
for name in order:
    if "floor" in times[name]:
        L.append(f"| {pipe(name)} | {cell(name, 'floor')} |")
L += ["", f"Reproduce: `{meta['command']}` (see bench/README.md). Raw numbers: `times.tsv`, `bytes.tsv`.", ""]
open(OUT_MD, "w").write("\n".join(L))

# Chart: grouped horizontal bars (log time axis), then update-size bars.
rows = [r for r in chart_rows if not r[0].startswith("synthetic")] + [r for r in chart_rows if r[0].startswith("synthetic")]
import math
LW, BW, RH = 430, 440, 26
lo, hi = 0.01, max([x for r in rows for x in r[1:] if x] + [1])
def xs(v):
    return BW * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi * 1.3) - math.log10(lo))
H1 = 60 + RH * len(rows)
upd = [(n, v) for n, v in upd_chart if any(v)]
H2 = 90 + 170 if upd and floor else 0
S = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LW + BW + 130}" height="{H1 + H2 + 20}" font-family="sans-serif" font-size="11">',
     '<rect width="100%" height="100%" fill="white"/>',
     f'<text x="10" y="20" font-size="14" font-weight="bold">ostree-bridge (blue) vs ostree-ext {meta["peer_version"]} (orange): median wall time, log scale</text>']
for t in (0.01, 0.1, 1, 10, 100):
    if t <= hi * 1.3:
        x = LW + xs(t)
        S.append(f'<line x1="{x:.1f}" y1="35" x2="{x:.1f}" y2="{H1 - 15}" stroke="#ddd"/><text x="{x:.1f}" y="{H1 - 3}" text-anchor="middle" fill="#666">{t:g} s</text>')
for i, (name, a, b) in enumerate(rows):
    y = 40 + RH * i
    S.append(f'<text x="{LW - 6}" y="{y + 14}" text-anchor="end">{escape(name[:70])}</text>')
    for j, (v, col) in enumerate(((a, "#1f77b4"), (b, "#ff7f0e"))):
        if v:
            S.append(f'<rect x="{LW}" y="{y + 2 + 11 * j}" width="{xs(v):.1f}" height="10" fill="{col}"/>'
                     f'<text x="{LW + xs(v) + 3:.1f}" y="{y + 11 + 11 * j}" font-size="9">{v:.2f}</text>')
if H2:
    y0 = H1 + 20
    S.append(f'<text x="10" y="{y0}" font-size="14" font-weight="bold">Update v1 → v2: MB fetched by layer budget (dashed: the floors)</text>')
    vals = [v for _, vs in upd for v in vs if v]
    top = max(vals + [floor, pkgfloor]) * 1.1
    ph, base = 150, y0 + 20 + 150
    gw = min(180, (LW + BW - 40) / len(upd))
    cols = [("#9ecae1", "ours"), ("#1f77b4", "ours, prior"), ("#fdd0a2", "peer"), ("#ff7f0e", "peer, prior")]
    for gi, (n, vs) in enumerate(upd):
        gx = 60 + gi * gw
        for k, v in enumerate(vs):
            if v:
                h = ph * v / top
                S.append(f'<rect x="{gx + k * (gw - 20) / 4:.1f}" y="{base - h:.1f}" width="{(gw - 20) / 4 - 2:.1f}" height="{h:.1f}" fill="{cols[k][0]}"/>'
                         f'<text x="{gx + k * (gw - 20) / 4 + (gw - 20) / 8:.1f}" y="{base - h - 2:.1f}" text-anchor="middle" font-size="8">{v/MB:.1f}</text>')
        S.append(f'<text x="{gx + (gw - 20) / 2:.1f}" y="{base + 13}" text-anchor="middle">≤ {n} layers</text>')
    fy = base - ph * floor / top
    S.append(f'<line x1="55" y1="{fy:.1f}" x2="{LW + BW - 10}" y2="{fy:.1f}" stroke="black" stroke-dasharray="4 3"/>')
    if pkgfloor:
        py = base - ph * pkgfloor / top
        S.append(f'<line x1="55" y1="{py:.1f}" x2="{LW + BW - 10}" y2="{py:.1f}" stroke="#888" stroke-dasharray="2 2"/>'
                 f'<text x="{LW + BW - 8}" y="{py + 4:.1f}" fill="#666">package floor {pkgfloor/MB:.1f} MB</text>')
    S.append(f'<text x="{LW + BW - 8}" y="{fy + 4:.1f}">floor {floor/MB:.1f} MB</text>')
    S.append(f'<line x1="55" y1="{base}" x2="{LW + BW - 10}" y2="{base}" stroke="#999"/>')
    for k, (c, label) in enumerate(cols):
        S.append(f'<rect x="{60 + 110 * k}" y="{base + 24}" width="10" height="10" fill="{c}"/><text x="{74 + 110 * k}" y="{base + 33}">{label}</text>')
S.append("</svg>")
open(OUT_SVG, "w").write("\n".join(S) + "\n")
print("\n".join(L))
