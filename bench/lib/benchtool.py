#!/usr/bin/python3
"""Helpers for bench/run.sh (no dependencies beyond Python's standard library).

  benchtool.py synth DIR MB SEED          deterministic synthetic tree of about MB MiB
  benchtool.py manifest OCIDIR            print the (only or first) manifest of an oci: layout
  benchtool.py layers OCIDIR              "N TOTAL_BYTES": layer count and compressed size
  benchtool.py newbytes OLD NEW           bytes and count of NEW's layers OLD lacks (by digest)
  benchtool.py tail-bytes BASE DERIVED    bytes of the DERIVED layers beyond BASE's layer count
  benchtool.py contentmeta REPO REV TREE  ostree-ext contentmeta JSON from TREE's dpkg database
  benchtool.py pkgfiles TREE CHANGED      the files of every package owning a CHANGED path, and
                                          the CHANGED paths no package owns (one per line)
"""
import json, os, random, subprocess, sys


def manifest(d):
    idx = json.load(open(os.path.join(d, "index.json")))
    dg = idx["manifests"][0]["digest"].split(":", 1)[1]
    return json.load(open(os.path.join(d, "blobs", "sha256", dg)))


def layers(d):
    return [(l["digest"], l["size"]) for l in manifest(d)["layers"]]


def synth(root, mb, seed):
    """Many small files (0.5-32 KiB, text-like) and a few large ones (mixed text and noise), about
    60 % of the bytes in large files, so gzip has real work and ostree many objects."""
    rng, mb = random.Random(int(seed)), int(mb)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
             for _ in range(5000)]
    k = 1_200_000 if mb >= 64 else 200_000   # ~7 MB (~1.2 MB for tiny trees) of word soup
    text = b" ".join(rng.choice(words) for _ in range(k))
    noise = rng.randbytes((8 if mb >= 64 else 2) << 20)
    total = mb << 20
    small_budget, written, n = total * 2 // 5, 0, 0
    base = os.path.join(root, "usr", "share", "synth")
    os.makedirs(os.path.join(root, "usr", "etc"), exist_ok=True)
    for d in ("var", "proc", "sys", "dev", "run", "tmp", "sysroot", "boot"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    with open(os.path.join(root, "usr", "etc", "os-release"), "w") as f:
        f.write(f"NAME=Synthetic\nID=synthetic\nVERSION_ID={mb}\n")
    while written < small_budget:
        size = int(rng.lognormvariate(8.5, 1.0)) % (32 << 10) + 512
        off = rng.randrange(len(text) - size)
        p = os.path.join(base, f"d{n // 500:04d}", f"f{n % 500:03d}.txt")
        if n % 500 == 0:
            os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(text[off:off + size])
        written += size; n += 1
    big = (total - written) // 16
    os.makedirs(os.path.join(base, "big"), exist_ok=True)
    for i in range(16):
        with open(os.path.join(base, "big", f"blob{i:02d}.bin"), "wb") as f:
            left = big
            while left:
                src = text if rng.random() < 0.5 else noise
                k = min(left, 1 << 20)
                off = rng.randrange(len(src) - k)
                f.write(src[off:off + k]); left -= k
    print(f"{n} small files, 16 large; {(written + 16 * big) / 2**20:.0f} MiB", file=sys.stderr)


UNPACKAGED = "bench-unpackaged-content"


def contentmeta(repo, rev, tree):
    """ostree-ext's ObjectMetaSized from the dpkg database under TREE: content checksum ->
    package, or one pseudo-component for what no package owns."""
    out = subprocess.run(["ostree", f"--repo={repo}", "ls", "-R", "-C", rev],
                         capture_output=True, text=True, check=True).stdout
    by_path = {}
    for line in out.splitlines():
        f = line.split(None, 5)
        if len(f) == 6 and f[0][0] in "-l":  # regular files and symlinks are content objects
            by_path[f[5].split(" -> ")[0] if f[0][0] == "l" else f[5]] = (f[4], int(f[3]))
    info = os.path.join(tree, "usr/lib/sysimage/dpkg/info")
    owner = {}
    if os.path.isdir(info):
        for name in sorted(os.listdir(info)):
            if not name.endswith(".list"):
                continue
            pkg = name[:-5].split(":")[0]
            for p in open(os.path.join(info, name), errors="replace"):
                p = p.rstrip("\n")
                for cand in (p, "/usr" + p, p.replace("/etc/", "/usr/etc/", 1) if p.startswith("/etc/") else None):
                    if cand and cand in by_path:
                        owner.setdefault(cand, pkg)
                        break
    m, sizes = {}, {}
    for path, pkg in owner.items():
        csum, size = by_path[path]
        if csum not in m:
            m[csum] = pkg
            sizes[pkg] = sizes.get(pkg, 0) + size
    # ostree-ext needs every content object mapped: what no package owns goes to one component
    # that changes often (as rpm-ostree's "unpackaged" content does).
    for path, (csum, size) in sorted(by_path.items()):
        if csum not in m:
            m[csum] = UNPACKAGED
            sizes[UNPACKAGED] = sizes.get(UNPACKAGED, 0) + size
    meta = [{"identifier": p, "name": p, "srcid": p, "change_time_offset": 1,
             "change_frequency": 2**32 - 1 if p == UNPACKAGED else 1, "size": s}
            for p, s in sorted(sizes.items())]
    json.dump({"map": m, "sizes": meta}, sys.stdout)


def dpkg_owners(tree):
    """path (as in the tree: /usr/etc, merged /usr) -> package, from TREE's dpkg database."""
    info = os.path.join(tree, "usr/lib/sysimage/dpkg/info")
    owner = {}
    if not os.path.isdir(info):
        return owner
    for name in sorted(os.listdir(info)):
        if not name.endswith(".list"):
            continue
        pkg = name[:-5].split(":")[0]
        for p in open(os.path.join(info, name), errors="replace"):
            p = p.rstrip("\n")
            for cand in (p, "/usr" + p, "/usr" + p if p.startswith("/etc/") else None):
                if cand and os.path.lexists(tree + cand) and not os.path.isdir(tree + cand):
                    owner.setdefault(cand, pkg)
                    break
    return owner


def pkgfiles(tree, changed):
    owner = dpkg_owners(tree)
    changed = ["/" + l.strip().lstrip("/") for l in open(changed) if l.strip()]
    pkgs = {owner[p] for p in changed if p in owner}
    out = sorted({p for p, k in owner.items() if k in pkgs} | {p for p in changed if p not in owner})
    print("\n".join(p.lstrip("/") for p in out))
    print(f"{len(pkgs)} packages", file=sys.stderr)


def main():
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "synth":
        synth(*a)
    elif cmd == "manifest":
        json.dump(manifest(a[0]), sys.stdout)
    elif cmd == "layers":
        ls = layers(a[0]); print(len(ls), sum(s for _, s in ls))
    elif cmd == "newbytes":
        old = {d for d, _ in layers(a[0])}
        new = [(d, s) for d, s in layers(a[1]) if d not in old]
        print(sum(s for _, s in new), len(new))
    elif cmd == "tail-bytes":
        n = len(layers(a[0]))
        print(sum(s for _, s in layers(a[1])[n:]))
    elif cmd == "pkgfiles":
        pkgfiles(*a)
    elif cmd == "contentmeta":
        contentmeta(*a)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
