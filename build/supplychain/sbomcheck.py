"""Does the signed SBOM describe the image completely? The component rules of `verify`.

Owns the comparisons between the attested CycloneDX document and what the image and the lock
say: every OS package component equals a locked package of the target (name, version, arch,
SHA-256 of the package file) and vice versa; every Python component (`pkg:pypi/`) equals a
distribution installed in the image (its `*.dist-info/METADATA` Name and Version under the
image's Python target) and vice versa; no component of another kind hides in the document; and
the unsigned SBOM referrer (what scanners read) is the same document as the attested one.
Names are compared PEP 503-normalized.
"""
from __future__ import annotations

import email.parser
import json
import posixpath
import re

from supplychain.errors import SupplyChainError
from supplychain.builder import BUILD_REF, compute_files, compute_links
from supplychain.layer import FILE, LayerEntry, compute_normal_path
from supplychain.oci import Layout
from supplychain.sbom import SBOM_MEDIA_TYPE, SYMLINK_PROPERTY

DEFAULT_PYTHON_TARGET = "/opt/kubevirt-py/site-packages"


def compute_normal_name(name: str) -> str:
    """PEP 503 normalized distribution name ("Foo_Bar.baz" -> "foo-bar-baz")."""
    return re.sub(r"[-_.]+", "-", name).lower()


def compute_image_dists(view: dict[str, LayerEntry], target: str) -> set[tuple[str, str]]:
    """(normalized name, version) of every distribution installed under `target` in the image
    (`<target>/<dist>.dist-info/METADATA`, core metadata Name/Version)."""
    base = compute_normal_path(target)
    out = set()
    for path, entry in view.items():
        if entry.kind != FILE or posixpath.dirname(posixpath.dirname(path)) != base:
            continue
        if path.endswith(".dist-info/METADATA"):
            meta = email.parser.BytesParser().parsebytes(entry.data, headersonly=True)
            out.add((compute_normal_name(meta["Name"] or ""), meta["Version"] or ""))
    return out


def _sha256(comp: dict) -> str:
    return next((h.get("content", "") for h in comp.get("hashes", []) if h.get("alg") == "SHA-256"), "")


def compute_sbom_wheels(sbom: dict) -> list[tuple[str, str]]:
    """(name, wheel SHA-256) of the SBOM's Python components."""
    return [(c.get("name", ""), _sha256(c)) for c in sbom.get("components", [])
            if c.get("purl", "").startswith("pkg:pypi/")]


def check_sbom_components(sbom: dict, kind: str, locked: set[tuple[str, str, str, str]],
                          image_dists: set[tuple[str, str]], target: str = "") -> tuple[int, int]:
    """Compare the SBOM's components with the lock target (`locked`: name, evr, arch, sha256) and
    the image's Python distributions; return (OS package count, Python package count).

    Besides those, only the build component (files the build generates) may appear; nested file
    components are checked by check_sbom_files. Raises SupplyChainError naming the first
    difference."""
    listed, pythons = set(), set()
    for comp in sbom.get("components", []):
        purl = comp.get("purl", "")
        if purl.startswith(f"pkg:{kind}/"):
            arch = purl.split("arch=", 1)[1].split("&", 1)[0] if "arch=" in purl else ""
            listed.add((comp.get("name", ""), comp.get("version", ""), arch, _sha256(comp)))
        elif purl.startswith("pkg:pypi/"):
            if not _sha256(comp):
                raise SupplyChainError(f"Python package {comp.get('name')} has no SHA-256")
            pythons.add((compute_normal_name(comp.get("name", "")), comp.get("version", "")))
        elif comp.get("bom-ref") != BUILD_REF:
            raise SupplyChainError(f"component {comp.get('name')!r} ({purl or 'no purl'}) is neither a locked "
                                   f"{kind} package nor a Python package of the image")
    if listed != locked:
        raise SupplyChainError(f"package set differs from lock target {target}: "
                               f"{compute_package_difference(listed, locked)}")
    if pythons != image_dists:
        extra, missing = sorted(pythons - image_dists), sorted(image_dists - pythons)
        raise SupplyChainError(f"Python packages differ from the image's: not installed "
                               f"{[f'{n}=={v}' for n, v in extra]}, not listed {[f'{n}=={v}' for n, v in missing]}")
    return len(listed), len(pythons)


def compute_package_difference(listed: set[tuple[str, ...]], locked: set[tuple[str, ...]]) -> str:
    """Name by name: packages only in the SBOM, only in the lock, and in both with another
    version, arch or SHA-256, e.g. "hello: SBOM and lock differ in version, arch or SHA-256"."""
    extra = {e[0] for e in listed - locked}
    missing = {m[0] for m in locked - listed}
    parts = []
    if extra - missing:
        parts.append(f"not in the lock {sorted(extra - missing)}")
    if missing - extra:
        parts.append(f"not in the SBOM {sorted(missing - extra)}")
    if extra & missing:
        parts.append(f"version, arch or SHA-256 differ from the lock {sorted(extra & missing)}")
    return "; ".join(parts)


def check_unsigned_sbom(layout: Layout, digest: str, attested: dict) -> None:
    """Exactly one unsigned SBOM referrer of `digest`, equal (as JSON) to the attested SBOM."""
    refs = layout.read_referrers(digest, SBOM_MEDIA_TYPE)
    if len(refs) != 1:
        raise SupplyChainError(f"expected one unsigned SBOM referrer, found {len(refs)}")
    ref = refs[0]
    try:
        doc = json.loads(layout.read_blob(ref["layers"][0]))
    except ValueError:
        doc = None
    if doc != attested:
        raise SupplyChainError(f"unsigned SBOM referrer {ref['_descriptor']['digest']} differs from the signed "
                               "SBOM attestation")


def _link_target(comp: dict) -> str | None:
    return next((p.get("value", "") for p in comp.get("properties", []) if p.get("name") == SYMLINK_PROPERTY), None)


def compute_sbom_files(sbom: dict, links: bool = False) -> dict[str, str]:
    """{"/path": sha256} of every file component nested in the SBOM's components (with `links`:
    {"/path": target} of the symbolic links instead); a path listed twice, or a file component
    at the top level, is refused."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for comp in sbom.get("components", []):
        if comp.get("type") == "file":
            raise SupplyChainError(f"file {comp.get('name')} is not attributed to a component")
        for sub in comp.get("components", []):
            if sub.get("type") != "file":
                continue
            path = sub.get("name", "")
            if path in seen:
                raise SupplyChainError(f"file {path} is listed twice")
            seen.add(path)
            target = _link_target(sub)
            if (target is not None) == links:
                out[path] = target if target is not None else _sha256(sub)
    return out


def check_sbom_links(sbom: dict, view: dict[str, LayerEntry]) -> int:
    """Every symbolic link of the image is in the SBOM with the same target, and the SBOM lists
    no other link. Returns the number of links."""
    listed = compute_sbom_files(sbom, links=True)
    actual = {path: target for path, target, _ in compute_links(view, {})}
    missing = sorted(set(actual) - set(listed))
    if missing:
        raise SupplyChainError(f"{len(missing)} symlinks of the image are not in the SBOM, e.g. {missing[0]} -> "
                               f"{actual[missing[0]]}")
    extra = sorted(set(listed) - set(actual))
    if extra:
        raise SupplyChainError(f"SBOM lists {len(extra)} symlinks the image does not have, e.g. {extra[0]}")
    for path in sorted(actual):
        if listed[path] != actual[path]:
            raise SupplyChainError(f"symlink {path}: target in the image {actual[path]} differs from the "
                                   f"SBOM's {listed[path]}")
    return len(actual)


def check_sbom_files(sbom: dict, view: dict[str, LayerEntry]) -> int:
    """Every regular file of the image is in the SBOM with its SHA-256, and the SBOM lists no
    other file. Returns the number of files."""
    listed = compute_sbom_files(sbom)
    actual = {path: sha for path, sha, _ in compute_files(view, {})}
    missing = sorted(set(actual) - set(listed))
    if missing:
        raise SupplyChainError(f"{len(missing)} files of the image are not in the SBOM, e.g. {missing[0]}")
    extra = sorted(set(listed) - set(actual))
    if extra:
        raise SupplyChainError(f"SBOM lists {len(extra)} files the image does not have, e.g. {extra[0]}")
    for path in sorted(actual):
        if listed[path] != actual[path]:
            raise SupplyChainError(f"file {path}: SHA-256 in the image {actual[path][:16]}... differs from the "
                                   f"SBOM's {listed[path][:16]}...")
    return len(actual)
