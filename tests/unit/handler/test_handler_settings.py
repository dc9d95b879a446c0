"""virt-handler's ``--pvc-root``: default and explicit, carried into the agent's config."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.virt_handler.domain import DEFAULT_PVC_ROOT
from services.virt_handler.main import SERVICE, compute_handler_settings
from shared.service import CommonSettings


def params(**overrides):
    values = {"node_name": "n1", "libvirt_uri": "test:///default", "image_dir": None, "domain_type": "auto",
              "heartbeat_interval": 5.0, "workers": 8}
    values.update(overrides)
    return values


@pytest.mark.parametrize("given, expected", [
    pytest.param({}, DEFAULT_PVC_ROOT, id="default"),
    pytest.param({"pvc_root": Path("/state/pvcs")}, Path("/state/pvcs"), id="explicit"),
])
def test_pvc_root_setting(given, expected, tmp_path):
    settings = compute_handler_settings(CommonSettings(service="virt-handler", nats_servers=("nats://x",),
                                                       state_dir=tmp_path, params=params(**given)))
    assert settings.pvc_root == expected


def test_the_pvc_root_option_is_offered():
    from click.testing import CliRunner

    from shared.service import service_command
    result = CliRunner().invoke(service_command(SERVICE), ["--help"])
    assert "--pvc-root" in result.output and str(DEFAULT_PVC_ROOT) in result.output
