"""Build time of each project image, cold (empty package cache: download + verify) and cached,
and image sizes (compressed layers). Prints figures and the cold/cached ratio.

    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) .venv/bin/python bench/bench_image_build.py

The cold build downloads the pinned packages, so it needs the package mirror (network); without
it the bench ends with one line naming what could not be fetched.
"""
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from supplychain.builder import apply_build
from supplychain.errors import SupplyChainError
from supplychain.fetch import Cache

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(Path(tmp) / "cache")
        for name in ("control-plane", "handler"):
            spec = ROOT / "build" / "images" / f"{name}.yaml"
            shutil.rmtree(cache.root, ignore_errors=True)
            t0 = time.perf_counter()
            result = apply_build(spec, Path(tmp) / f"cold-{name}", "bench", cache, [], epoch)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            apply_build(spec, Path(tmp) / f"warm-{name}", "bench", cache, [], epoch)
            warm = time.perf_counter() - t0
            manifest = result.layout.read_json(result.descriptor)
            size = sum(layer["size"] for layer in manifest["layers"])
            print(f"{name:14s} packages={len(result.packages):3d} cold={cold:6.1f}s cached={warm:6.1f}s "
                  f"ratio={cold / warm:4.1f} compressed={size / 1e6:6.1f}MB digest={result.digest[:19]}")


if __name__ == "__main__":
    try:
        main()
    except SupplyChainError as err:  # e.g. offline: the cold build cannot fetch
        sys.exit(f"bench: {err}")
