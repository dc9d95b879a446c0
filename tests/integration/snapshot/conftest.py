"""Fixtures for virt-snapshot integration tests (real nats-server and store from tests/conftest.py)."""

from __future__ import annotations

import shutil

import pytest

needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")


@pytest.fixture
def storage_dir(tmp_path):
    (tmp_path / "pvcs").mkdir()
    return tmp_path
