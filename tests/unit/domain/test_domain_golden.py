"""Golden domain XML for every VMI (and VM/replica-set/pool template) in KubeVirt's examples.

Each example is converted with ``domain_type='test'`` and compared as canonical XML with
``golden/<file-stem>.xml``; the same XML must be accepted by libvirt's test driver.
Regenerate after an intended change with ``KUBEVIRT_PY_REGEN_GOLDEN=1``.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
import yaml

from services.virt_handler.domain import compute_domain_xml
from services.virt_handler.domain.xmlmodel import canonical_xml

PROJECT_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = PROJECT_ROOT.parent / "shared" / "conformance" / "kubevirt-examples"
GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("KUBEVIRT_PY_REGEN_GOLDEN") == "1"
STATE_PLACEHOLDER = "/GOLDEN-STATE"
LAYER_DIGEST = re.compile(r"/images/rootfs/[0-9a-f]{64}/")


def vmi_from_manifest(doc: dict) -> dict | None:
    """The VMI a manifest describes (a VMI itself, or the VMI template of a VM/VMIRS/pool)."""
    kind, name = doc.get("kind"), doc["metadata"]["name"]
    if kind == "VirtualMachineInstance":
        template = {"metadata": doc["metadata"], "spec": doc["spec"]}
    elif kind in ("VirtualMachine", "VirtualMachineInstanceReplicaSet"):
        template = doc["spec"]["template"]
    elif kind == "VirtualMachinePool":
        template = doc["spec"]["virtualMachineTemplate"]["spec"]["template"]
    else:
        return None
    meta = dict(template.get("metadata") or {})
    meta.update(name=name, namespace="default", uid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"default/{name}")))
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": meta,
            "spec": template["spec"]}


def example_cases():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and vmi_from_manifest(doc) is not None:
                yield pytest.param(path, doc, id=path.stem)


def test_examples_folder_has_vmis():
    assert len(list(example_cases())) >= 10


@pytest.mark.parametrize(("path", "doc"), list(example_cases()))
def test_example_converts_to_its_golden_domain_accepted_by_libvirt(path, doc, make_ctx, state_root,
                                                                    libvirt_test_conn):
    vmi = vmi_from_manifest(doc)
    ctx = make_ctx(vmi_dir=state_root / "vmis" / "default" / vmi["metadata"]["name"])
    xml = compute_domain_xml(vmi, ctx)
    # machine-specific parts: the state dir and the layer digest of the stand-in images
    normalized = LAYER_DIGEST.sub("/images/rootfs/LAYER/", xml.replace(str(state_root), STATE_PLACEHOLDER))
    golden = GOLDEN / f"{path.stem}.xml"
    if REGEN or not golden.exists():
        if not REGEN:
            pytest.fail(f"missing {golden}; run with KUBEVIRT_PY_REGEN_GOLDEN=1")
        golden.write_text(normalized)
    assert canonical_xml(normalized) == canonical_xml(golden.read_text())

    domain = libvirt_test_conn.defineXML(xml)
    try:
        assert domain.name() == f"default_{vmi['metadata']['name']}"
        assert domain.UUIDString() == vmi["metadata"]["uid"]
        domain.create()
        assert domain.isActive()
        domain.destroy()
    finally:
        domain.undefine()
