"""Push and pull images with every referrer (signatures, attestations, SBOM) to an OCI registry.

Owns the registry side of publishing (opencontainers/distribution-spec v1.1 `spec.md`): blobs
are uploaded (monolithic POST+PUT) and checked by digest, manifests are put by digest with their
exact bytes (so digests never change), referrers are found through the Referrers API
(`GET /v2/<name>/referrers/<digest>`) or, when the registry has none (distribution 2.8, the
Debian `docker-registry`), through the referrers tag schema the spec defines as the fallback:
an image index tagged `sha256-<hex>` listing the referrer descriptors. The image tag is set
last, after every referrer is in place. Plain HTTP is used only for loopback hosts. Credentials
(token or basic auth, distribution's token flow) come from $KUBEVIRT_BUILD_REGISTRY_USER and
$KUBEVIRT_BUILD_REGISTRY_PASSWORD.
"""
from __future__ import annotations

import json
import os
import re
from urllib.parse import urljoin

import requests

from supplychain.errors import SupplyChainError
from supplychain.oci import INDEX_TYPE, MANIFEST_TYPE, Layout, compute_digest, compute_json

ACCEPT = ", ".join([MANIFEST_TYPE, INDEX_TYPE])
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def compute_reference(ref: str) -> tuple[str, str, str]:
    """("host[:port]", "repository", "tag or sha256:...") of `host/repo[:tag|@digest]`."""
    host, _, rest = ref.partition("/")
    if not rest or "." not in host and ":" not in host and host != "localhost":
        raise SupplyChainError(f"image reference {ref!r} must start with a registry host")
    if "@" in rest:
        repo, _, what = rest.partition("@")
    elif re.search(r":[^/]+$", rest):
        repo, _, what = rest.rpartition(":")
    else:
        repo, what = rest, "latest"
    return host, repo, what


def compute_fallback_tag(digest: str) -> str:
    """The referrers tag schema: "sha256:<hex>" -> "sha256-<hex>"."""
    return digest.replace(":", "-", 1)


class Registry:
    """One registry host (HTTPS, or HTTP for loopback)."""

    def __init__(self, host: str):
        scheme = "http" if host.rsplit(":", 1)[0] in LOOPBACK or host.startswith("[::1]") else "https"
        self.base = f"{scheme}://{host}"
        self.host = host
        self.session = requests.Session()
        self.session.trust_env = False  # never send loopback traffic through a proxy
        user, password = os.environ.get("KUBEVIRT_BUILD_REGISTRY_USER"), os.environ.get("KUBEVIRT_BUILD_REGISTRY_PASSWORD")
        self.credentials = (user, password) if user and password else None
        self.token: str | None = None

    def _request(self, method: str, path: str, **kw) -> requests.Response:
        url = path if path.startswith("http") else urljoin(self.base, path)
        headers = dict(kw.pop("headers", {}))
        for attempt in (0, 1):
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            try:
                resp = self.session.request(method, url, headers=headers, timeout=60, **kw)
            except requests.RequestException as exc:
                raise SupplyChainError(f"registry {self.host}: {type(exc).__name__}: {str(exc)[:200]}") from None
            if resp.status_code != 401 or attempt:
                return resp
            self._authenticate(resp.headers.get("WWW-Authenticate", ""))
        return resp

    def _authenticate(self, challenge: str) -> None:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if not challenge.lower().startswith("bearer") or "realm" not in fields:
            if self.credentials:
                self.session.auth = self.credentials
                return
            raise SupplyChainError(f"registry {self.host}: authentication required")
        params = {k: v for k, v in fields.items() if k in ("service", "scope")}
        resp = self.session.get(fields["realm"], params=params, auth=self.credentials, timeout=60)
        if resp.status_code != 200:
            raise SupplyChainError(f"registry {self.host}: token request refused ({resp.status_code})")
        body = resp.json()
        self.token = body.get("token") or body.get("access_token")

    def _fail(self, resp: requests.Response, what: str) -> SupplyChainError:
        detail = resp.text.strip().replace("\n", " ")[:200]
        return SupplyChainError(f"registry {self.host}: {what}: HTTP {resp.status_code} {detail}")

    # -- blobs ------------------------------------------------------------------------------
    def apply_blob(self, repo: str, data: bytes, digest: str) -> None:
        """Upload a blob unless the registry has it."""
        if self._request("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 200:
            return
        start = self._request("POST", f"/v2/{repo}/blobs/uploads/")
        if start.status_code != 202 or "Location" not in start.headers:
            raise self._fail(start, f"upload of {digest} not accepted")
        location = urljoin(self.base, start.headers["Location"])
        sep = "&" if "?" in location else "?"
        done = self._request("PUT", f"{location}{sep}digest={digest}", data=data,
                             headers={"Content-Type": "application/octet-stream"})
        if done.status_code != 201:
            raise self._fail(done, f"upload of {digest} refused")

    def read_blob(self, repo: str, desc: dict) -> bytes:
        """Download a blob and check its digest and size."""
        resp = self._request("GET", f"/v2/{repo}/blobs/{desc['digest']}")
        if resp.status_code != 200:
            raise self._fail(resp, f"blob {desc['digest']}")
        if compute_digest(resp.content) != desc["digest"] or len(resp.content) != desc["size"]:
            raise SupplyChainError(f"registry {self.host}: blob {desc['digest']} does not match its digest or size")
        return resp.content

    # -- manifests --------------------------------------------------------------------------
    def apply_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> requests.Response:
        """Put manifest bytes under a digest or tag."""
        resp = self._request("PUT", f"/v2/{repo}/manifests/{ref}", data=data, headers={"Content-Type": media_type})
        if resp.status_code != 201:
            raise self._fail(resp, f"manifest {ref} refused")
        return resp

    def read_manifest(self, repo: str, ref: str) -> tuple[bytes, str] | None:
        """(bytes, mediaType) of a manifest by tag or digest; None if absent. A manifest asked
        for by digest must hash to it."""
        resp = self._request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(resp, f"manifest {ref}")
        if ref.startswith("sha256:") and compute_digest(resp.content) != ref:
            raise SupplyChainError(f"registry {self.host}: manifest {ref} does not match its digest")
        return resp.content, json.loads(resp.content).get("mediaType", "")

    def read_referrers(self, repo: str, digest: str) -> list[dict]:
        """Referrer descriptors of `digest`: Referrers API, else the fallback tag's index."""
        resp = self._request("GET", f"/v2/{repo}/referrers/{digest}", headers={"Accept": INDEX_TYPE})
        if resp.status_code == 200 and resp.headers.get("Content-Type", "").startswith(INDEX_TYPE):
            return json.loads(resp.content).get("manifests", [])
        found = self.read_manifest(repo, compute_fallback_tag(digest))
        return json.loads(found[0]).get("manifests", []) if found else []


def _push_manifest_tree(reg: Registry, repo: str, layout: Layout, desc: dict) -> dict:
    manifest = layout.read_json(desc)
    for blob in [manifest["config"], *manifest.get("layers", [])]:
        reg.apply_blob(repo, layout.read_blob(blob), blob["digest"])
    return reg.apply_manifest(repo, desc["digest"], layout.read_blob(desc), desc["mediaType"]).headers


def apply_push(layout: Layout, tag: str, dest: str) -> tuple[str, int]:
    """Push the image tagged `tag` and all its referrers to `dest` (host/repo[:tag]; default
    tag: `tag`), the tag last. Returns (digest, referrer count)."""
    host, repo, dest_tag = compute_reference(dest if re.search(r":[^/]+$", dest.partition("/")[2]) else f"{dest}:{tag}")
    reg = Registry(host)
    desc = layout.read_tagged(tag)
    _push_manifest_tree(reg, repo, layout, desc)
    refs = [r["_descriptor"] for r in layout.read_referrers(desc["digest"])]
    api = False
    for ref in refs:
        headers = _push_manifest_tree(reg, repo, layout, ref)
        api = api or "OCI-Subject" in headers
    if refs and not api:  # referrers tag schema: merge into the index tagged sha256-<hex>
        existing = {d["digest"]: d for d in reg.read_referrers(repo, desc["digest"])}
        for ref in refs:
            existing[ref["digest"]] = {k: ref[k] for k in ("mediaType", "digest", "size", "artifactType",
                                                           "annotations") if k in ref}
        index = {"schemaVersion": 2, "mediaType": INDEX_TYPE,
                 "manifests": sorted(existing.values(), key=lambda d: d["digest"])}
        reg.apply_manifest(repo, compute_fallback_tag(desc["digest"]), compute_json(index), INDEX_TYPE)
    reg.apply_manifest(repo, dest_tag, layout.read_blob(desc), desc["mediaType"])
    return desc["digest"], len(refs)


def apply_pull(src: str, layout: Layout, tag: str) -> tuple[str, int]:
    """Pull `src` (host/repo:tag or @digest) and every referrer into `layout`, tagged `tag`.
    Every blob and manifest is checked against its digest. Returns (digest, referrer count)."""
    host, repo, ref = compute_reference(src)
    reg = Registry(host)
    found = reg.read_manifest(repo, ref)
    if found is None:
        raise SupplyChainError(f"registry {host}: {repo}:{ref} not found")
    data, media_type = found
    digest = compute_digest(data)
    _pull_manifest_tree(reg, repo, layout, data, media_type or MANIFEST_TYPE)
    layout.apply_tag({"mediaType": media_type or MANIFEST_TYPE, "digest": digest, "size": len(data)}, tag)
    refs = reg.read_referrers(repo, digest)
    index = layout.read_index()["manifests"]
    for desc in refs:
        got = reg.read_manifest(repo, desc["digest"])
        if got is None:
            raise SupplyChainError(f"registry {host}: referrer {desc['digest']} listed but missing")
        _pull_manifest_tree(reg, repo, layout, got[0], desc["mediaType"])
        index = [m for m in index if m["digest"] != desc["digest"]] + [desc]
    layout.apply_index(index)
    return digest, len(refs)


def _pull_manifest_tree(reg: Registry, repo: str, layout: Layout, data: bytes, media_type: str) -> None:
    manifest = json.loads(data)
    for blob in [manifest["config"], *manifest.get("layers", [])]:
        if not layout.blob_path(blob["digest"]).exists():
            layout.apply_blob(reg.read_blob(repo, blob), blob["mediaType"])
    layout.apply_blob(data, media_type)
