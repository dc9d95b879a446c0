"""The acceleration probe's firmware really exits through the debug port under TCG, and the
probe's answer is cached per process."""

from __future__ import annotations

import json
import shutil

import pytest

from services.virt_handler import kvm_probe


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU not installed")
def test_probe_firmware_reaches_protected_mode_and_exits_under_tcg():
    assert kvm_probe._run_probe("tcg", timeout=10) is True


def test_result_is_cached(monkeypatch):
    monkeypatch.setattr(kvm_probe, "_cached", {"kvm": False})
    monkeypatch.setattr(kvm_probe, "_run_probe", lambda *a: pytest.fail("probed again"))
    assert kvm_probe.compute_domain_type() == "qemu"
    monkeypatch.setattr(kvm_probe, "_cached", {"kvm": True})
    assert kvm_probe.compute_domain_type() == "kvm"


def test_firmware_is_64_kib_with_a_reset_vector_jump():
    image = kvm_probe.compute_probe_firmware()
    assert len(image) == 0x10000 and image[0xFFF0] == 0xEA


def test_the_probe_runs_once_per_boot_and_its_answer_is_shared_through_the_cache_file(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(kvm_probe, "_run_probe", lambda accel, timeout: calls.append(accel) or False)
    cache = tmp_path / "kvm-probe"
    assert kvm_probe._probe_once_per_boot(1.0, refresh=False, cache=cache) is False
    assert kvm_probe._probe_once_per_boot(1.0, refresh=False, cache=cache) is False
    assert calls == ["kvm"]
    saved = json.loads(cache.read_text())
    assert saved == {"bootId": kvm_probe.BOOT_ID.read_text().strip(), "kvm": False}
    # another boot's answer is not trusted
    cache.write_text(json.dumps({"bootId": "another-boot", "kvm": True}))
    assert kvm_probe._probe_once_per_boot(1.0, refresh=False, cache=cache) is False
    assert calls == ["kvm", "kvm"]
