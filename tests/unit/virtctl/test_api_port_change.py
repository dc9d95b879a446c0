"""``virtctl up --api-port`` on an installation whose virt-api already runs on another port:
refused at once with one line, and installation.json keeps the port the kubeconfig names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from services.virtctl import installation as inst


@pytest.fixture
def state(tmp_path: Path):
    """An installation recorded on port 18443 whose virt-api record names a live process."""
    directory = tmp_path / "state"
    layout = inst.load_layout(directory, 18443)
    stand_in = subprocess.Popen(["sleep", "60"])  # stands in for virt-api: only its pid/argv matter
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    (layout.run_dir / f"{inst.VIRT_API.name}.json").write_text(json.dumps({"pid": stand_in.pid, "argv": ["sleep", "60"]}))
    yield directory
    stand_in.kill()
    stand_in.wait()


def test_another_port_while_virt_api_runs_is_refused_and_nothing_is_written(state: Path):
    before = (state / "installation.json").read_text()
    with pytest.raises(ValueError) as caught:
        inst.check_api_port_change(state, 18444)
    assert str(caught.value) == "virt-api already runs on port 18443; run 'virtctl down' first to move it to 18444"
    assert (state / "installation.json").read_text() == before


@pytest.mark.parametrize("port", [pytest.param(None, id="no-port"), pytest.param(18443, id="same-port")])
def test_same_or_no_port_is_accepted(state: Path, port):
    assert inst.check_api_port_change(state, port) is None


def test_another_port_when_virt_api_is_stopped_is_accepted(state: Path):
    (state / "run" / f"{inst.VIRT_API.name}.json").unlink()
    assert inst.check_api_port_change(state, 18444) is None


def test_a_fresh_state_dir_is_accepted_and_left_empty(tmp_path: Path):
    assert inst.check_api_port_change(tmp_path / "new", 18444) is None
    assert not (tmp_path / "new").exists()
