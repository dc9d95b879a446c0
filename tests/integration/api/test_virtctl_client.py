"""virtctl's small API client, configured from the kubeconfig ``virtctl up`` writes."""

from __future__ import annotations

import pytest

from services.virtctl.client import ApiClient, resource_path
from shared import errors
from tests.integration.api.vm_factory import GROUP, VERSION, VMS, make_vm


async def test_client_reads_the_kubeconfig_and_maps_status_errors(api, namespace):
    async with ApiClient.from_kubeconfig(api.kubeconfig) as client:
        assert client.namespace == "default"
        path = resource_path(GROUP, VERSION, VMS, namespace)
        created = await client.post(path, make_vm("cli"))
        assert created["metadata"]["name"] == "cli"
        got = await client.get(resource_path(GROUP, VERSION, VMS, namespace, "cli"))
        assert got["metadata"]["uid"] == created["metadata"]["uid"]
        patched = await client.patch(resource_path(GROUP, VERSION, VMS, namespace, "cli"),
                                     {"spec": {"runStrategy": "Always"}})
        assert patched["spec"]["runStrategy"] == "Always"
        with pytest.raises(errors.AlreadyExists):
            await client.post(path, make_vm("cli"))
        with pytest.raises(errors.NotFound) as missing:
            await client.get(resource_path(GROUP, VERSION, VMS, namespace, "nope"))
        assert missing.value.code == 404 and '"nope" not found' in str(missing.value)
        with pytest.raises(errors.Invalid) as invalid:
            bad = make_vm("bad")
            bad["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]["disk"]["bus"] = "ide"
            await client.post(path, bad)
        assert any(c.field.endswith("disks[0].disk.bus") for c in invalid.value.causes)
        await client.delete(resource_path(GROUP, VERSION, VMS, namespace, "cli"))


async def test_client_reports_an_unreachable_server_in_one_line(api, tmp_path):
    from services.virtctl.kubeconfig import apply_kubeconfig, compute_kubeconfig
    from shared.natsserver import pick_free_port

    path = tmp_path / "kubeconfig"
    apply_kubeconfig(path, compute_kubeconfig(f"https://127.0.0.1:{pick_free_port()}", api.ca_file.read_bytes(), "t"))
    async with ApiClient.from_kubeconfig(path, timeout=5) as client:
        with pytest.raises(errors.ServiceUnavailable) as err:
            await client.get("/apis")
    assert "cannot reach https://127.0.0.1:" in str(err.value)
