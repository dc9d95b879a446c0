"""CycloneDX 1.6 SBOM of an image, composed with cyclonedx-python-lib and strictly validated.

Owns the SBOM document: `metadata.component` is the image (type container, purl
`pkg:oci/<name>@sha256:<manifest>`, purl-spec types/oci-definition.json), components are every
locked package (purl `pkg:rpm/...` or `pkg:deb/...` with the package file's SHA-256) and every
Python distribution installed from a wheel (purl `pkg:pypi/...`, wheel SHA-256), and the
dependency graph follows the lock's requires. The time stamp comes from SOURCE_DATE_EPOCH and
the serial number from the image digest, so the SBOM is reproducible. Every regular file of
the image is a nested `file` component (path, SHA-256) of the component it belongs to; files the
build writes itself belong to the `kubevirt-build` component (bom-ref "build:generated"). The Python build
environment itself is described by `cyclonedx-py environment` (cyclonedx-bom).
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from supplychain.errors import SupplyChainError

SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"


def compute_package_purl(kind: str, pkg: dict, vendor: str, distro: str = "") -> PackageURL:
    """purl of a lock entry: `pkg:rpm/<vendor>/<name>@<version>-<release>?arch=..&epoch=..&distro=..`
    (epoch only when non-zero, distro when the repository names one, e.g. fedora-40) or `pkg:deb/<vendor>/<name>@<version>?arch=..&distro=<suite>`
    (purl-spec types/rpm-definition.json, deb-definition.json)."""
    if kind == "rpm":
        epoch, _, vr = pkg["evr"].rpartition(":")
        qualifiers = {"arch": pkg["arch"]}
        if epoch and epoch != "0":
            qualifiers["epoch"] = epoch
        if distro:
            qualifiers["distro"] = distro
        return PackageURL("rpm", vendor.lower(), pkg["name"], vr, qualifiers)
    qualifiers = {"arch": pkg["arch"]}
    if distro:
        qualifiers["distro"] = distro
    return PackageURL("deb", vendor.lower(), pkg["name"], pkg["evr"], qualifiers)


def compute_image_purl(name: str, digest: str, repository: str, tag: str) -> PackageURL:
    """`pkg:oci/<last repository segment>@sha256:<hex>?repository_url=..&tag=..`."""
    return PackageURL("oci", None, name.lower(), digest, {"repository_url": repository, "tag": tag})


def compute_sbom(build, vendor: str, epoch: int) -> str:
    """The image SBOM as CycloneDX 1.6 JSON text for a builder.BuildResult `build`; validated
    strictly against the bundled 1.6 schema (SupplyChainError if invalid)."""
    spec = build.spec
    image = Component(type=ComponentType.CONTAINER, name=spec.name, version=build.digest, bom_ref="image",
                      purl=compute_image_purl(spec.repository.rsplit("/", 1)[-1], build.digest,
                                              spec.repository, build.tag),
                      hashes=[HashType(alg=HashAlgorithm.SHA_256, content=build.digest.split(":", 1)[1])])
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"{spec.repository}@{build.digest}"))
    bom.metadata.timestamp = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    bom.metadata.component = image
    by_name = {}
    suites = {r["name"]: r.get("distro") or r.get("suite", "") for r in build.repositories}
    for pkg in build.packages:
        comp = Component(type=ComponentType.LIBRARY if build.kind == "rpm" else ComponentType.APPLICATION,
                         name=pkg["name"], version=pkg["evr"], bom_ref=f"{build.kind}:{pkg['id']}",
                         purl=compute_package_purl(build.kind, pkg, vendor, suites.get(pkg["repository"], "")),
                         hashes=[HashType(alg=HashAlgorithm.SHA_256, content=pkg["sha256"])],
                         properties=[Property(name="kubevirt-py:repository", value=pkg["repository"]),
                                     Property(name="kubevirt-py:signer", value=pkg.get("signer", "")),
                                     Property(name="kubevirt-py:url", value=pkg["urls"][0])])
        bom.components.add(comp)
        by_name[pkg["name"]] = comp
    dists = []
    for dist in build.python:
        comp = Component(type=ComponentType.LIBRARY, name=dist.name, version=dist.version,
                         bom_ref=f"pypi:{dist.name}=={dist.version}",
                         purl=PackageURL("pypi", None, dist.name.lower().replace("_", "-"), dist.version),
                         hashes=[HashType(alg=HashAlgorithm.SHA_256, content=dist.sha256)],
                         properties=[Property(name="kubevirt-py:wheel", value=dist.filename)])
        bom.components.add(comp)
        dists.append(comp)
    bom.register_dependency(image, list(by_name.values()) + dists)
    for pkg in build.packages:
        deps = [by_name[n] for n in pkg.get("requires", []) if n in by_name]
        if deps:
            bom.register_dependency(by_name[pkg["name"]], deps)
    text = compute_with_files(JsonV1Dot6(bom).output_as_string(indent=2), build.files, build.links)
    check_sbom_schema(text)
    return text


BUILD_COMPONENT = {"type": "application", "name": "kubevirt-build", "bom-ref": "build:generated",
                   "description": "files the image build writes itself (accounts, declared paths and files, "
                                  "the package database)"}


def compute_file_component(path: str, sha256: str) -> dict:
    """A CycloneDX `file` component: name = absolute path in the image, SHA-256 of the bytes."""
    return {"type": "file", "name": path, "bom-ref": f"file:{path}",
            "hashes": [{"alg": "SHA-256", "content": sha256}]}


SYMLINK_PROPERTY = "kubevirt-build:symlink-target"


def compute_link_component(path: str, target: str) -> dict:
    """A CycloneDX `file` component for a symbolic link: no hash (a link has no bytes of its
    own), its target in the property `kubevirt-build:symlink-target`."""
    return {"type": "file", "name": path, "bom-ref": f"file:{path}",
            "properties": [{"name": SYMLINK_PROPERTY, "value": target}]}


def compute_with_files(text: str, files: tuple[tuple[str, str, str], ...],
                       links: tuple[tuple[str, str, str], ...] = ()) -> str:
    """Add every image file (and symbolic link, with its target) as a `file` component nested in
    the component that owns it (a package, a Python distribution, or the build component for
    generated files)."""
    if not files and not links:
        return text
    doc = json.loads(text)
    by_ref = {c["bom-ref"]: c for c in doc.get("components", [])}
    build = dict(BUILD_COMPONENT)
    for path, sha, owner in files:
        parent = by_ref.get(owner, build)
        parent.setdefault("components", []).append(compute_file_component(path, sha))
    for path, target, owner in links:
        parent = by_ref.get(owner, build)
        parent.setdefault("components", []).append(compute_link_component(path, target))
    if build.get("components"):
        doc.setdefault("components", []).append(build)
    return json.dumps(doc, indent=2) + "\n"


PROJECT_DIST = "kubevirt-py"


def compute_sbom_baseline(doc: dict) -> dict:
    """What the committed `sbom/<image>.cdx.json` must keep matching: the SBOM without what
    changes with every source commit (serial number, time stamp, the image's digest in
    metadata and dependencies, and the project's own wheel `kubevirt-py` with its files), i.e.
    every locked OS package, every pinned runtime wheel, every file of theirs and every file the
    build generates, with hashes."""
    keep = [c for c in doc.get("components", []) if c.get("name") != PROJECT_DIST]
    return {"bomFormat": doc.get("bomFormat"), "specVersion": doc.get("specVersion"),
            "image": doc.get("metadata", {}).get("component", {}).get("name"),
            "components": sorted(keep, key=lambda c: c.get("bom-ref", ""))}


def check_sbom_schema(text: str) -> None:
    """Strict CycloneDX 1.6 JSON schema validation (offline, bundled schema)."""
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise SupplyChainError(f"SBOM is not valid CycloneDX 1.6: {str(error).splitlines()[0][:200]}")


def apply_python_env_sbom(python: Path, out: Path, validate: bool = True) -> Path:
    """Describe a Python environment with `cyclonedx-py environment` (CycloneDX 1.6 JSON,
    reproducible output); `python` is the interpreter of that environment. With `validate`, the
    strict schema check runs once here (it takes ~10 s of CPU for ~100 distributions, because of
    the license data), not inside cyclonedx-py as well."""
    proc = subprocess.run([sys.executable, "-m", "cyclonedx_py", "environment", "--sv", "1.6", "--of", "JSON",
                           "--output-reproducible", "--no-validate", "-o", str(out), str(python)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SupplyChainError(f"cyclonedx-py environment failed: {proc.stderr.strip().splitlines()[-1:]}")
    if validate:
        check_sbom_schema(Path(out).read_text())
    return Path(out)
