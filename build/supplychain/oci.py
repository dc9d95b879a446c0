"""OCI image layout: blobs, image config, manifests, the index with tags, and referrer artifacts.

Owns writing and reading an OCI image layout directory (opencontainers/image-spec v1.1
`image-layout.md`, `manifest.md`, `config.md`, `descriptor.md`): `oci-layout`, `index.json`,
`blobs/sha256/<hex>`. JSON documents are serialised canonically (sorted keys, no whitespace) so
the same inputs always give the same digests. Tags are `org.opencontainers.image.ref.name`
annotations in index.json; referrers (SBOM, signature bundles) are manifests with a `subject`.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

from supplychain.layer import Layer

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
EMPTY_JSON = b"{}"


class LayoutError(Exception):
    """A layout is malformed, incomplete or does not match its digests; str() is one line."""


def compute_json(doc: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, compact separators, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_digest(data: bytes) -> str:
    """The OCI digest string "sha256:<hex>" of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compute_created(epoch: int) -> str:
    """RFC 3339 UTC time for SOURCE_DATE_EPOCH `epoch` (seconds)."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """What the runtime needs: numeric `user` ("uid:gid"), `entrypoint`, `cmd`, `env`
    ({name: value}), `workdir`, `labels`, `exposed_ports` (e.g. ["8443/tcp"]), the platform, and
    `created` (SOURCE_DATE_EPOCH)."""

    user: str
    entrypoint: list[str]
    env: dict[str, str]
    created: int
    cmd: list[str] = dataclasses.field(default_factory=list)
    workdir: str = "/"
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    exposed_ports: list[str] = dataclasses.field(default_factory=list)
    architecture: str = "amd64"
    os: str = "linux"


def compute_config(config: ImageConfig, layers: list[Layer]) -> dict:
    """The OCI image config document (config.md) for `layers` (base first); `Env` is sorted and
    history has one entry per layer, all dated SOURCE_DATE_EPOCH."""
    created = compute_created(config.created)
    inner: dict[str, Any] = {
        "User": config.user,
        "Entrypoint": list(config.entrypoint),
        "Env": sorted(f"{k}={v}" for k, v in config.env.items()),
        "WorkingDir": config.workdir,
    }
    if config.cmd:
        inner["Cmd"] = list(config.cmd)
    if config.labels:
        inner["Labels"] = dict(config.labels)
    if config.exposed_ports:
        inner["ExposedPorts"] = {p: {} for p in config.exposed_ports}
    return {
        "architecture": config.architecture,
        "os": config.os,
        "created": created,
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": created, "created_by": "kubevirt-build", "comment": layer.comment}
                    for layer in layers],
    }


class Layout:
    """An OCI image layout directory at `root`; created on first write."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # -- writing -------------------------------------------------------------
    def apply_init(self) -> None:
        """Create `oci-layout`, an empty `index.json` and the blob directory if missing."""
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            marker.write_bytes(compute_json({"imageLayoutVersion": "1.0.0"}))
        if not (self.root / "index.json").exists():
            self.apply_index([])

    def apply_blob(self, data: bytes, media_type: str, **extra: Any) -> dict:
        """Store `data` content-addressed and return its descriptor (mediaType, digest, size,
        plus `extra` fields such as annotations or artifactType)."""
        self.apply_init()
        digest = compute_digest(data)
        path = self.blob_path(digest)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def apply_image(self, config: ImageConfig, layers: list[Layer], annotations: dict[str, str]) -> dict:
        """Write layers, config and manifest; return the manifest descriptor (not yet tagged)."""
        layer_descs = [self.apply_blob(layer.blob, LAYER_GZIP_TYPE) for layer in layers]
        config_desc = self.apply_blob(compute_json(compute_config(config, layers)), CONFIG_TYPE)
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config_desc,
                    "layers": layer_descs}
        if annotations:
            manifest["annotations"] = dict(sorted(annotations.items()))
        desc = self.apply_blob(compute_json(manifest), MANIFEST_TYPE)
        desc["platform"] = {"architecture": config.architecture, "os": config.os}
        return desc

    def apply_referrer(self, subject: dict, artifact_type: str, payload: bytes, payload_type: str,
                       annotations: dict[str, str] | None = None) -> dict:
        """Attach `payload` to the manifest `subject` as an OCI 1.1 referrer (empty config,
        one layer, `artifactType`); the referrer is listed in index.json so tools that walk the
        index find it. Returns the referrer manifest descriptor."""
        empty = self.apply_blob(EMPTY_JSON, EMPTY_TYPE)
        layer = self.apply_blob(payload, payload_type)
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": artifact_type,
                    "config": empty, "layers": [layer],
                    "subject": {k: subject[k] for k in ("mediaType", "digest", "size")}}
        if annotations:
            manifest["annotations"] = dict(sorted(annotations.items()))
        desc = self.apply_blob(compute_json(manifest), MANIFEST_TYPE, artifactType=artifact_type)
        if annotations:
            desc["annotations"] = dict(sorted(annotations.items()))
        entries = [m for m in self.read_index()["manifests"] if m["digest"] != desc["digest"]]
        self.apply_index(entries + [desc])
        return desc

    def apply_tag(self, desc: dict, tag: str) -> None:
        """Point `tag` at the manifest `desc` in index.json (moving it if already present)."""
        entries = [m for m in self.read_index()["manifests"]
                   if m.get("annotations", {}).get(REF_NAME) != tag]
        tagged = dict(desc)
        tagged["annotations"] = {**desc.get("annotations", {}), REF_NAME: tag}
        self.apply_index(entries + [tagged])

    def apply_index(self, manifests: list[dict]) -> None:
        """Rewrite index.json with `manifests`, sorted for stable bytes (tagged images first)."""
        ordered = sorted(manifests, key=lambda m: ("subject" in m or "artifactType" in m,
                                                   m.get("annotations", {}).get(REF_NAME, ""),
                                                   m["digest"]))
        index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": ordered}
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "index.json").write_bytes(compute_json(index))

    # -- reading -------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        """Path of the blob for "sha256:<hex>"; LayoutError for other algorithms."""
        alg, _, hexpart = digest.partition(":")
        if alg != "sha256" or len(hexpart) != 64:
            raise LayoutError(f"unsupported digest {digest!r}")
        return self.root / "blobs" / "sha256" / hexpart

    def read_blob(self, desc: dict) -> bytes:
        """Read the blob of descriptor `desc`, checking its size and digest (fails closed)."""
        path = self.blob_path(desc["digest"])
        if not path.exists():
            raise LayoutError(f"blob {desc['digest']} is missing")
        data = path.read_bytes()
        if len(data) != desc["size"]:
            raise LayoutError(f"blob {desc['digest']} has size {len(data)}, descriptor says {desc['size']}")
        if compute_digest(data) != desc["digest"]:
            raise LayoutError(f"blob {desc['digest']} content does not match its digest")
        return data

    def read_json(self, desc: dict) -> dict:
        """Read and parse a JSON blob (manifest, config) after checking it."""
        return json.loads(self.read_blob(desc))

    def read_index(self) -> dict:
        """Parse index.json; an absent index counts as empty."""
        path = self.root / "index.json"
        if not path.exists():
            return {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
        return json.loads(path.read_bytes())

    def read_tagged(self, tag: str) -> dict:
        """The manifest descriptor tagged `tag`; LayoutError if none or several."""
        found = [m for m in self.read_index()["manifests"]
                 if m.get("annotations", {}).get(REF_NAME) == tag]
        if len(found) != 1:
            raise LayoutError(f"tag {tag!r} names {len(found)} manifests in {self.root}/index.json")
        return found[0]

    def read_referrers(self, subject_digest: str, artifact_type: str | None = None) -> list[dict]:
        """Referrer manifests (parsed) whose subject is `subject_digest`, optionally filtered by
        artifactType; each gets a "_descriptor" key with its own descriptor."""
        out = []
        for desc in self.read_index()["manifests"]:
            if "artifactType" not in desc:
                continue
            if artifact_type and desc["artifactType"] != artifact_type:
                continue
            manifest = self.read_json(desc)
            if manifest.get("subject", {}).get("digest") == subject_digest:
                out.append({**manifest, "_descriptor": desc})
        return out

    def check_image(self, desc: dict) -> list[str]:
        """Check one image completely: manifest, config and every layer blob (digest and size),
        and every layer's uncompressed sha256 against `rootfs.diff_ids`. Returns one line per
        checked blob; raises LayoutError on the first mismatch."""
        lines = []
        manifest = self.read_json(desc)
        lines.append(f"manifest {desc['digest']} size {desc['size']}")
        if manifest.get("mediaType") != MANIFEST_TYPE:
            raise LayoutError(f"manifest {desc['digest']} has mediaType {manifest.get('mediaType')!r}")
        config = self.read_json(manifest["config"])
        lines.append(f"config {manifest['config']['digest']} size {manifest['config']['size']}")
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(manifest["layers"]):
            raise LayoutError(f"config lists {len(diff_ids)} diff_ids for {len(manifest['layers'])} layers")
        for layer, diff_id in zip(manifest["layers"], diff_ids):
            blob = self.read_blob(layer)
            try:
                tar = gzip.decompress(blob) if layer["mediaType"].endswith("+gzip") else blob
            except (OSError, EOFError) as exc:
                raise LayoutError(f"layer {layer['digest']} does not decompress: {exc}") from None
            if compute_digest(tar) != diff_id:
                raise LayoutError(f"layer {layer['digest']} uncompressed digest differs from diff_id {diff_id}")
            lines.append(f"layer {layer['digest']} size {layer['size']} diff_id {diff_id}")
        return lines

    def read_layer_tars(self, desc: dict) -> list[bytes]:
        """Uncompressed tars of the image's layers, base first (blobs are checked)."""
        manifest = self.read_json(desc)
        return [gzip.decompress(self.read_blob(layer)) for layer in manifest["layers"]]
