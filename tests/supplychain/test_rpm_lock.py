"""RPM lock -> fetch -> verify against real RPMs, real signatures and a loopback repository."""
import json
import shutil

import pytest
import yaml

from supplychain.errors import SupplyChainError
from supplychain.fetch import Cache
from supplychain.lockfile import apply_lock, check_lock_fresh, compute_target_packages, read_lock
from supplychain.packages import apply_fetch_verified, compute_payload_entries


def _good(world):
    return {p.name: p for p in world.signed.values()}


def test_lock_resolves_newest_versions_and_leaves_excluded_packages_out(rpm_world, publish, tmp_path):
    config, _ = publish("good", _good(rpm_world))
    lock = apply_lock(config, tmp_path / "rpms.lock.json", Cache(tmp_path / "cache"))
    assert lock["targets"]["app"] == ["greeter-data-0:1.0-1.x86_64", "hello-0:1.0-1.x86_64",
                                      "libgreet-0:2.1-1.x86_64"]
    by_id = {p["id"]: p for p in lock["packages"]}
    hello = by_id["hello-0:1.0-1.x86_64"]
    import hashlib
    rpm = rpm_world.signed["hello"]
    assert hello["sha256"] == hashlib.sha256(rpm.read_bytes()).hexdigest()
    assert hello["size"] == rpm.stat().st_size
    assert hello["signer"] == rpm_world.fingerprints["repo"]
    assert hello["requires"] == ["libgreet"]
    assert hello["urls"][0].endswith("/Packages/" + rpm.name)
    assert lock["repositories"][0]["keys"][0]["fingerprints"] == [rpm_world.fingerprints["repo"]]
    text = (tmp_path / "rpms.lock.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_lock_detects_changed_inputs_as_stale(rpm_world, publish, tmp_path):
    config, _ = publish("stale", _good(rpm_world))
    lock = apply_lock(config, tmp_path / "rpms.lock.json", Cache(tmp_path / "cache"))
    check_lock_fresh(lock, tmp_path / "rpms.lock.json")
    doc = yaml.safe_load(config.read_text())
    doc["targets"]["app"]["install"].append("libgreet")
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(SupplyChainError, match="rpms.lock.json is stale: inputs changed"):
        check_lock_fresh(lock, tmp_path / "rpms.lock.json")


@pytest.mark.parametrize("variant,expected", [
    pytest.param("unsigned", r"package hello-0:1.0-1.x86_64: not signed", id="unsigned"),
    pytest.param("stranger", r"package hello-0:1.0-1.x86_64: signed by unpinned key [0-9a-f]+$", id="unpinned-key"),
    pytest.param("old", r"package hello-0:1.0-1.x86_64: signing key [0-9A-F]{40} expired at 2020-01-02", id="expired-key"),
    pytest.param("retired", r"package hello-0:1.0-1.x86_64: signing key [0-9A-F]{40} is revoked", id="revoked-key"),
])
def test_lock_refuses_badly_signed_packages(rpm_world, publish, tmp_path, variant, expected):
    rpms = _good(rpm_world)
    hello = rpm_world.signed["hello"].name
    rpms[hello] = {"unsigned": rpm_world.rpms["hello"], "stranger": rpm_world.by_stranger,
                   "old": rpm_world.by_old, "retired": rpm_world.by_retired}[variant]
    keys = {"old": ["repo", "old"], "retired": None}.get(variant, ["repo"])
    key_files = [rpm_world.keys["repo"], rpm_world.revoked_key] if variant == "retired" else None
    config, _ = publish(variant, rpms, keys=keys or ("repo",), key_files=key_files)
    with pytest.raises(SupplyChainError, match=expected):
        apply_lock(config, tmp_path / "rpms.lock.json", Cache(tmp_path / "cache"))


@pytest.fixture
def locked(rpm_world, publish, tmp_path):
    config, repo_dir = publish("locked", _good(rpm_world))
    lock_path = tmp_path / "rpms.lock.json"
    apply_lock(config, lock_path, Cache(tmp_path / "lockcache"))
    return lock_path, repo_dir


def test_fetch_verifies_into_a_fresh_cache_and_then_works_from_cache(locked, tmp_path):
    lock_path, repo_dir = locked
    lock = read_lock(lock_path)
    pkgs = compute_target_packages(lock, "app")
    cache = Cache(tmp_path / "cache")
    paths = apply_fetch_verified(lock, lock_path.parent, pkgs, cache)
    assert [p.name for p in paths] == [p["sha256"] for p in pkgs]
    shutil.rmtree(repo_dir)  # the repository disappears: the cache still serves verified bytes
    assert apply_fetch_verified(lock, lock_path.parent, pkgs, cache) == paths


def test_a_flipped_byte_in_a_served_rpm_is_refused(locked, tmp_path):
    lock_path, repo_dir = locked
    lock = read_lock(lock_path)
    target = next(repo_dir.glob("Packages/hello-*.rpm"))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(SupplyChainError, match=r"^package hello-0:1.0-1.x86_64: sha256 [0-9a-f]{64} does not match the lock"):
        apply_fetch_verified(lock, lock_path.parent, compute_target_packages(lock, "app"), Cache(tmp_path / "c"))


def test_a_changed_lock_entry_matching_a_tampered_rpm_fails_the_signature(locked, tmp_path):
    lock_path, repo_dir = locked
    import hashlib
    target = next(repo_dir.glob("Packages/hello-*.rpm"))
    data = bytearray(target.read_bytes())
    data[-40] ^= 0x01  # inside the compressed payload
    target.write_bytes(bytes(data))
    lock = read_lock(lock_path)
    entry = next(p for p in lock["packages"] if p["name"] == "hello")
    entry["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(SupplyChainError, match=r"^package hello-0:1.0-1.x86_64: signature check failed: .*BAD"):
        apply_fetch_verified(lock, lock_path.parent, compute_target_packages(lock, "app"), Cache(tmp_path / "c"))


def test_payload_unpacks_without_running_scriptlets_and_maps_owners(rpm_world, tmp_path):
    import os
    marker = "/tmp/kvb-scriptlet-ran"
    if os.path.exists(marker):
        os.unlink(marker)
    entries = compute_payload_entries("rpm", rpm_world.signed["greeter-data"], {"qemu": 107}, {"qemu": 107})
    motd = next(e for e in entries if e.path.endswith("usr/share/greeter/motd"))
    assert (motd.uid, motd.gid, motd.mode, motd.data) == (107, 107, 0o644, b"hi\n")
    assert not os.path.exists(marker)


def test_content_addressed_mirror_serves_packages_when_the_repository_is_gone(rpm_world, served, publish, tmp_path):
    root, url = served
    config, repo_dir = publish("mirrored", _good(rpm_world))
    doc = yaml.safe_load(config.read_text())
    doc["repositories"][0]["mirrors"] = [url + "cas-" + tmp_path.name]
    config.write_text(yaml.safe_dump(doc))
    lock_path = tmp_path / "rpms.lock.json"
    lock = apply_lock(config, lock_path, Cache(tmp_path / "lockcache"))
    cas = root / ("cas-" + tmp_path.name)
    cas.mkdir()
    for rpm in repo_dir.glob("Packages/*.rpm"):
        import hashlib
        shutil.copy(rpm, cas / hashlib.sha256(rpm.read_bytes()).hexdigest())
    shutil.rmtree(repo_dir)
    pkgs = compute_target_packages(lock, "app")
    assert all(p["urls"][1] == f"{url}cas-{tmp_path.name}/{p['sha256']}" for p in pkgs)
    paths = apply_fetch_verified(lock, lock_path.parent, pkgs, Cache(tmp_path / "fresh"))
    assert len(paths) == 3


@pytest.mark.parametrize("payload", [pytest.param("w9.gzdio", id="gzip"), pytest.param("w6.xzdio", id="xz"),
                                     pytest.param("w19.zstdio", id="zstd")])
def test_payloads_of_every_compression_unpack_and_rebuilds_are_bit_identical(rpm_world, payload):
    import hashlib
    first = rpm_world.apply_rpm("hello", epoch=2, payload=payload)
    data = first.read_bytes()
    second = rpm_world.apply_rpm("hello", epoch=2, payload=payload)
    assert hashlib.sha256(second.read_bytes()).digest() == hashlib.sha256(data).digest()
    [entry] = [e for e in compute_payload_entries("rpm", second, {}, {}) if e.kind == "file"]
    assert (entry.path.lstrip("./"), entry.data, entry.mode) == ("usr/bin/hello", b"hello binary\n", 0o755)


def test_rpm_purl_carries_a_non_zero_epoch_as_qualifier():
    from supplychain.sbom import compute_package_purl
    pkg = {"name": "qemu-kvm", "evr": "17:10.1.0-20.el9", "arch": "x86_64"}
    assert compute_package_purl("rpm", pkg, "CentOS").to_string() == \
        "pkg:rpm/centos/qemu-kvm@10.1.0-20.el9?arch=x86_64&epoch=17"
    pkg0 = {"name": "acl", "evr": "2.4.0-2.el9", "arch": "x86_64"}
    assert compute_package_purl("rpm", pkg0, "centos").to_string() == "pkg:rpm/centos/acl@2.4.0-2.el9?arch=x86_64"


def test_cli_refusal_is_one_line_naming_the_package(rpm_world, publish, tmp_path):
    import subprocess
    import sys
    rpms = _good(rpm_world)
    rpms[rpm_world.signed["hello"].name] = rpm_world.by_stranger
    config, _ = publish("cli", rpms)
    proc = subprocess.run([sys.executable, "-c", "from supplychain.cli import main; main()", "lock",
                           "--config", str(config), "--out", str(tmp_path / "l.json"), "--cache", str(tmp_path / "c")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("kubevirt-build: package hello-0:1.0-1.x86_64: signed by unpinned key ")
    assert not (tmp_path / "l.json").exists()


@pytest.mark.parametrize("signer,expected", [
    pytest.param("repo", None, id="pinned-key"),
    pytest.param("", r"^repository meta-none repomd.xml: not signed \(cannot fetch http://127.0.0.1:\d+/.*/repodata/repomd.xml.asc: File not found\)$", id="unsigned"),
    pytest.param("stranger", r"^repository meta-stranger repomd.xml: no good signature from a pinned key$", id="unpinned-key"),
])
def test_signed_repository_metadata_is_required_when_configured(rpm_world, publish, tmp_path, signer, expected):
    config, _ = publish(f"meta-{signer or 'none'}", _good(rpm_world), sign_metadata=signer)
    if expected is None:
        lock = apply_lock(config, tmp_path / "l.json", Cache(tmp_path / "c"))
        assert len(lock["packages"]) == 3
    else:
        with pytest.raises(SupplyChainError, match=expected):
            apply_lock(config, tmp_path / "l.json", Cache(tmp_path / "c"))


def test_payload_owned_by_an_undeclared_user_is_refused(rpm_world):
    rpm = rpm_world.signed["greeter-data"]
    with pytest.raises(SupplyChainError, match=rf"^package file {rpm.name}: \./usr/share/greeter/motd is owned by "
                                               r"qemu:qemu, not an account of the image$"):
        compute_payload_entries("rpm", rpm, {}, {})


def test_rpm_repository_metadata_must_be_signed_by_default(rpm_world, publish, tmp_path):
    """signedMetadata defaults to true for rpm repositories (dnf's repo_gpgcheck)."""
    import yaml

    config, _ = publish("meta-default", _good(rpm_world))
    doc = yaml.safe_load(config.read_text())
    del doc["repositories"][0]["signedMetadata"]
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(SupplyChainError, match=r"^repository meta-default repomd.xml: not signed "):
        apply_lock(config, tmp_path / "l.json", Cache(tmp_path / "c"))
