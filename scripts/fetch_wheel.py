#!/usr/bin/env python3
"""fetch_wheel.py NAME VERSION CACHE_DIR [TAG]: download one wheel from PyPI, checked against the index.

Finds NAME==VERSION's manylinux x86_64 wheel for TAG (default cp311, falling back to py3-none) through
PyPI's JSON simple API, downloads it into CACHE_DIR with a progress line on stderr (skipped when a file
with the right sha256 is already there), verifies the sha256 the index publishes, and prints the path.
"""
import hashlib
import json
import os
import sys
import time
import urllib.request

INDEX = os.environ.get("PIP_INDEX_SIMPLE", "https://pypi.org/simple")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def pick(files, name, version, tag):
    norm = name.replace("-", "_").lower()
    ok = []
    for f in files:
        fn = f["filename"]
        if not fn.endswith(".whl") or not fn.lower().startswith(f"{norm}-{version}-"):
            continue
        if "x86_64" not in fn or "manylinux" not in fn:
            continue
        if f"-{tag}-{tag}-" in fn:
            return f
        if "-py3-none-" in fn:
            ok.append(f)
    return ok[0] if ok else None


def main():
    name, version, cache = sys.argv[1], sys.argv[2], sys.argv[3]
    tag = sys.argv[4] if len(sys.argv) > 4 else "cp311"
    req = urllib.request.Request(f"{INDEX}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    files = json.load(urllib.request.urlopen(req, timeout=60))["files"]
    f = pick(files, name, version, tag)
    if f is None:
        sys.exit(f"fetch-wheel: the index has no manylinux x86_64 wheel of {name}=={version} for {tag}")
    want = f["hashes"]["sha256"]
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, f["filename"])
    if os.path.exists(path) and sha256(path) == want:
        print(path)
        return
    tmp = path + ".part"
    with urllib.request.urlopen(f["url"], timeout=120) as r, open(tmp, "wb") as out:
        total = int(r.headers.get("Content-Length") or f.get("size") or 0)
        done, t0, last = 0, time.time(), 0.0
        while True:
            b = r.read(1 << 20)
            if not b:
                break
            out.write(b)
            done += len(b)
            now = time.time()
            if now - last > 0.5 or done == total:
                last = now
                rate = done / max(now - t0, 1e-6) / 1e6
                pct = f"{100 * done / total:5.1f}%" if total else ""
                sys.stderr.write(f"\r  {f['filename']}: {done / 1e6:7.1f}/{total / 1e6:.1f} MB {pct} {rate:6.1f} MB/s")
                sys.stderr.flush()
        sys.stderr.write("\n")
    got = sha256(tmp)
    if got != want:
        os.remove(tmp)
        sys.exit(f"fetch-wheel: sha256 mismatch for {f['filename']}: got {got}, index says {want}")
    os.replace(tmp, path)
    sys.stderr.write(f"  sha256 ok ({want[:16]}…)\n")
    print(path)


if __name__ == "__main__":
    main()
