"""cloud-init data sources as ISO images: NoCloud (``cidata``) and ConfigDrive (``config-2``).

Owns: :func:`compute_cloud_init_files` (pure: which files with which bytes) and
:func:`apply_cloud_init_iso` (writes the ISO with ``pycdlib``, Rock Ridge + Joliet names
so Linux sees ``user-data`` etc.).

Facts (KubeVirt ``pkg/cloud-init``, ``../shared/docs/kubevirt-api.md`` §7): NoCloud has
``meta-data`` (``instance-id``, ``local-hostname``), ``user-data`` and optional
``network-config`` at the root; ConfigDrive has ``openstack/latest/meta_data.json``,
``user_data`` and ``network_data.json``. Default instance id ``<name>.<namespace>``;
hostname ``spec.hostname`` or the VMI name.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pycdlib
import yaml

from . import vmi_view
from .errors import DomainConversionError


def _decode(source: dict, plain: str, b64: str, secret: str, field_path: str) -> bytes | None:
    if source.get(secret):
        raise DomainConversionError("UnsupportedVolume",
                                    f"{field_path}.{secret}: Secrets are not available in kubevirt-py")
    if source.get(plain) is not None:
        return source[plain].encode()
    if source.get(b64) is not None:
        try:
            return base64.b64decode(source[b64], validate=True)
        except ValueError as exc:
            raise DomainConversionError("InvalidSpec", f"{field_path}.{b64}: not valid base64") from exc
    return None


def compute_cloud_init_files(vmi: dict, volume: dict, field_path: str) -> tuple[str, dict[str, bytes]]:
    """``(volume label, {iso path: content})`` for a cloudInitNoCloud or cloudInitConfigDrive volume.

    Raises DomainConversionError(UnsupportedVolume) for ``secretRef``/``networkDataSecretRef``.
    """
    name, namespace = vmi_view.name_of(vmi), vmi_view.namespace_of(vmi)
    hostname = vmi_view.spec(vmi).get("hostname") or name
    instance_id = f"{name}.{namespace}"
    if "cloudInitNoCloud" in volume:
        src, fp = volume["cloudInitNoCloud"], f"{field_path}.cloudInitNoCloud"
        files = {
            "meta-data": yaml.safe_dump({"instance-id": instance_id, "local-hostname": hostname},
                                        sort_keys=False).encode(),
            "user-data": _decode(src, "userData", "userDataBase64", "secretRef", fp) or b"",
        }
        network = _decode(src, "networkData", "networkDataBase64", "networkDataSecretRef", fp)
        if network is not None:
            files["network-config"] = network
        return "cidata", files
    src, fp = volume["cloudInitConfigDrive"], f"{field_path}.cloudInitConfigDrive"
    meta = {"instance_id": instance_id, "uuid": instance_id, "hostname": hostname, "name": hostname}
    files = {"openstack/latest/meta_data.json": json.dumps(meta, sort_keys=True).encode()}
    user = _decode(src, "userData", "userDataBase64", "secretRef", fp)
    if user is not None:
        files["openstack/latest/user_data"] = user
    network = _decode(src, "networkData", "networkDataBase64", "networkDataSecretRef", fp)
    if network is not None:
        files["openstack/latest/network_data.json"] = network
    return "config-2", files


def _iso_name(name: str) -> str:
    """An ISO9660 level-3 identifier for a Rock Ridge name (upper case, ``_`` for others)."""
    base = "".join(c if c.isalnum() else "_" for c in name.upper())[:30]
    return base


def apply_cloud_init_iso(path: Path, label: str, files: dict[str, bytes]) -> None:
    """Write ``files`` into an ISO at ``path`` with volume label ``label`` (atomic replace)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label)
    made_dirs: set[str] = set()
    try:
        for rel, content in sorted(files.items()):
            parts = rel.split("/")
            iso_parent, joliet_parent = "", ""
            for d in parts[:-1]:
                iso_parent += "/" + _iso_name(d)
                joliet_parent += "/" + d
                if iso_parent not in made_dirs:
                    iso.add_directory(iso_parent, rr_name=d, joliet_path=joliet_parent)
                    made_dirs.add(iso_parent)
            iso.add_fp(io.BytesIO(content), len(content), f"{iso_parent}/{_iso_name(parts[-1])}.;1",
                       rr_name=parts[-1], joliet_path=f"{joliet_parent}/{parts[-1]}")
        tmp = path.with_name(path.name + ".tmp")
        iso.write(str(tmp))
    finally:
        iso.close()
    tmp.chmod(0o644)
    tmp.replace(path)
