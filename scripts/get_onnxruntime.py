#!/usr/bin/env python3
"""Fetches ONNX Runtime's shared library for inferd's onnxruntime backend from the PyPI
`onnxruntime` wheel (checked against PyPI's sha256), with the Python standard library only.

    python3 scripts/get_onnxruntime.py [DEST_DIR]

Prints the library's path. Default DEST_DIR: $XDG_CACHE_HOME/inferd/onnxruntime-<version>
(~/.cache/...), which is where `inferd serve` looks unless --onnxruntime-lib says otherwise.
"""

import hashlib
import io
import json
import os
import platform
import sys
import urllib.request
import zipfile
from pathlib import Path

VERSION = os.environ.get("ONNXRUNTIME_VERSION", "1.23.2")
PLATFORM_TAGS = {"x86_64": "manylinux", "aarch64": "manylinux"}


def default_dest():
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "inferd" / f"onnxruntime-{VERSION}"


def main():
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else default_dest()
    lib = dest / "libonnxruntime.so"
    if lib.exists():
        print(lib)
        return
    machine = platform.machine()
    if sys.platform != "linux" or machine not in PLATFORM_TAGS:
        sys.exit(f"no prebuilt ONNX Runtime wheel chosen for {sys.platform}/{machine}")
    # The simple index (PEP 691 JSON), as pip reads it.
    request = urllib.request.Request("https://pypi.org/simple/onnxruntime/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        files = json.load(r)["files"]
    # Any CPython wheel for this platform carries the same library.
    wheels = [f for f in files if f["filename"].startswith(f"onnxruntime-{VERSION}-")
              and f["filename"].endswith(f"{machine}.whl") and "manylinux" in f["filename"]]
    if not wheels:
        sys.exit(f"onnxruntime {VERSION} has no manylinux {machine} wheel on PyPI")
    wheel = wheels[0]
    with urllib.request.urlopen(wheel["url"], timeout=300) as r:
        data = r.read()
    if hashlib.sha256(data).hexdigest() != wheel["hashes"]["sha256"]:
        sys.exit(f"{wheel['filename']}: sha256 does not match PyPI's")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = [n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so")]
        if not names:
            sys.exit(f"{wheel['filename']} has no onnxruntime/capi/libonnxruntime.so*")
        dest.mkdir(parents=True, exist_ok=True)
        partial = lib.with_suffix(".partial")
        partial.write_bytes(z.read(sorted(names, key=len)[-1]))
        os.replace(partial, lib)
    print(lib)


if __name__ == "__main__":
    main()
