"""Content-addressed cache: URL fallback, pinned bytes only, corrupted entries refetched."""
import hashlib

import pytest

from supplychain.errors import SupplyChainError
from supplychain.fetch import Cache


def test_a_missing_first_url_falls_back_to_the_next(served, tmp_path):
    root, url = served
    (root / "blob.bin").write_bytes(b"pinned bytes")
    sha = hashlib.sha256(b"pinned bytes").hexdigest()
    path = Cache(tmp_path / "c").apply_fetch([url + "missing.bin", url + "blob.bin"], sha, 12, "file blob")
    assert path == tmp_path / "c" / "sha256" / sha and path.read_bytes() == b"pinned bytes"


def test_a_corrupted_cache_entry_is_not_trusted(served, tmp_path):
    root, url = served
    (root / "blob2.bin").write_bytes(b"pinned bytes 2")
    sha = hashlib.sha256(b"pinned bytes 2").hexdigest()
    cache = Cache(tmp_path / "c")
    path = cache.apply_fetch([url + "blob2.bin"], sha, None, "file blob2")
    path.write_bytes(b"evil")
    assert cache.apply_fetch([url + "blob2.bin"], sha, None, "file blob2").read_bytes() == b"pinned bytes 2"


@pytest.mark.parametrize("size,expected", [
    pytest.param(3, r"^file blob3: size 14 does not match the lock \(3\)$", id="size"),
    pytest.param(None, r"^file blob3: sha256 [0-9a-f]{64} does not match the lock \(0{64}\)$", id="sha256"),
])
def test_wrong_bytes_are_refused_and_not_cached(served, tmp_path, size, expected):
    root, url = served
    (root / "blob3.bin").write_bytes(b"pinned bytes 3")
    sha = hashlib.sha256(b"pinned bytes 3").hexdigest() if size else "0" * 64
    cache = Cache(tmp_path / "c")
    with pytest.raises(SupplyChainError, match=expected):
        cache.apply_fetch([url + "blob3.bin"], sha, size, "file blob3")
    assert not cache.path_for(sha).exists()


def test_no_reachable_url_names_the_file(tmp_path):
    with pytest.raises(SupplyChainError, match=r"^file blob4: cannot fetch file:///nonexistent/blob4"):
        Cache(tmp_path / "c").apply_fetch(["file:///nonexistent/blob4"], "0" * 64, None, "file blob4")
