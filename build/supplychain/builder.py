"""Image build without a container engine: locked packages + accounts + wheels -> OCI image.

Owns the build flow of `kubevirt-build build`: check the lock is fresh, fetch and verify every
package of the spec's target, unpack payloads without scripts into the packages layer, write
accounts (/etc/passwd, /etc/group) and declared paths into a second layer, unpack the project's
wheels into a third, check the image policy (numeric non-root user, entrypoint present, no
shell or package manager), and write the OCI layout. Layers are reproducible (layer.py), so two
builds from the same inputs and SOURCE_DATE_EPOCH give the same manifest digest.
"""
from __future__ import annotations

import dataclasses
import email.parser
import hashlib
import posixpath
import struct
import zipfile
from pathlib import Path

from supplychain.dpkgdb import STATUS_PATH, compute_dpkg_status
from supplychain.errors import SupplyChainError
from supplychain.rpmdb import RPMDB_PATH, compute_rpmdb
from supplychain.fetch import Cache
from supplychain.layer import DIR, FILE, HARDLINK, SYMLINK, LayerEntry, compute_layer, compute_normal_path
from supplychain.lockfile import check_lock_fresh, compute_target_packages, read_lock
from supplychain.oci import ImageConfig, Layout, compute_created
from supplychain.packages import apply_fetch_verified, compute_payload_entries
from supplychain.pylock import apply_fetch_wheels, check_python_lock_fresh
from supplychain.spec import ImageSpec, read_spec


BUILD_REF = "build:generated"


def compute_files(view: dict[str, LayerEntry], owners: dict[str, str]) -> tuple[tuple[str, str, str], ...]:
    """Regular files (and hard links, by their target's bytes) of the merged `view` with their
    SHA-256 and owner bom-ref, sorted by path."""
    out = []
    for path, entry in view.items():
        if entry.kind == FILE:
            data = entry.data
        elif entry.kind == HARDLINK and compute_normal_path(entry.link) in view:
            data = view[compute_normal_path(entry.link)].data
        else:
            continue
        out.append((f"/{path}", hashlib.sha256(data).hexdigest(), owners.get(path, BUILD_REF)))
    return tuple(sorted(out))


def compute_links(view: dict[str, LayerEntry], owners: dict[str, str]) -> tuple[tuple[str, str, str], ...]:
    """Symbolic links of the merged `view` as ("/path", target as stored, owner bom-ref), sorted."""
    return tuple(sorted((f"/{path}", entry.link, owners.get(path, BUILD_REF))
                        for path, entry in view.items() if entry.kind == SYMLINK))


def _pyproject() -> Path:
    return Path(__file__).resolve().parents[2] / "pyproject.toml"


@dataclasses.dataclass(frozen=True)
class PythonDist:
    """A wheel put into the image: distribution `name`, `version`, the wheel `filename` and the
    `sha256` of the wheel file."""

    name: str
    version: str
    filename: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """What a build produced: the tagged manifest `descriptor` (digest = image identity), the
    lock `kind` and `packages` (lock entries) in the image, the `python` distributions, the
    lock's `repositories` entries, and `files`: every regular file of the image as
    ("/path", sha256 hex, owner bom-ref) sorted by path (owner: "<kind>:<package id>",
    "pypi:<name>==<version>" or BUILD_REF for files the build generates), and `links`: every
    symbolic link as ("/path", target, owner bom-ref)."""

    spec: ImageSpec
    layout: Layout
    tag: str
    descriptor: dict
    kind: str
    packages: list[dict]
    python: list[PythonDist]
    repositories: list[dict] = dataclasses.field(default_factory=list)
    files: tuple[tuple[str, str, str], ...] = ()
    links: tuple[tuple[str, str, str], ...] = ()

    @property
    def digest(self) -> str:
        """The image manifest digest "sha256:<hex>"."""
        return self.descriptor["digest"]


# Linux capability numbers (include/uapi/linux/capability.h) for the names specs may use.
CAPABILITIES = {"cap_chown": 0, "cap_dac_override": 1, "cap_fowner": 3, "cap_kill": 5, "cap_setgid": 6,
                "cap_setuid": 7, "cap_net_bind_service": 10, "cap_net_admin": 12, "cap_net_raw": 13,
                "cap_ipc_lock": 14, "cap_sys_chroot": 18, "cap_sys_ptrace": 19, "cap_sys_admin": 21,
                "cap_sys_nice": 23, "cap_sys_resource": 24}


def compute_capability_xattr(names: tuple[str, ...], where: str) -> str:
    """security.capability value (struct vfs_cap_data, revision 2, effective bit set) for the
    capability `names`, as a surrogate-escaped str so tarfile writes it as a binary PAX record."""
    bits = 0
    for name in names:
        if name.lower() not in CAPABILITIES:
            raise SupplyChainError(f"{where}: unknown capability {name!r}")
        bits |= 1 << CAPABILITIES[name.lower()]
    raw = struct.pack("<IIIII", 0x02000000 | 0x1, bits & 0xFFFFFFFF, 0, bits >> 32, 0)
    return raw.decode("utf-8", "surrogateescape")


def compute_account_entries(spec: ImageSpec) -> list[LayerEntry]:
    """/etc/passwd, /etc/group, the spec's `files` and `paths` (dirs, symlinks) as layer entries."""
    users = sorted(({"name": "root", "uid": 0, "gid": 0, "home": "/root"},) +
                   tuple(u for u in spec.users if u.get("uid") != 0), key=lambda u: u["uid"])
    groups = sorted(({"name": "root", "gid": 0},) + tuple(g for g in spec.groups if g.get("gid") != 0),
                    key=lambda g: g["gid"])
    passwd = "".join(f"{u['name']}:x:{u['uid']}:{u['gid']}::{u.get('home', '/')}:/sbin/nologin\n" for u in users)
    group = "".join(f"{g['name']}:x:{g['gid']}:\n" for g in groups)
    entries = [LayerEntry("etc/passwd", FILE, 0o644, data=passwd.encode()),
               LayerEntry("etc/group", FILE, 0o644, data=group.encode()),
               LayerEntry("tmp", DIR, 0o1777)]
    for i, p in enumerate(spec.paths):
        kind = p.get("type", "dir")
        if kind == "dir":
            entries.append(LayerEntry(p["path"], DIR, int(str(p.get("mode", "0755")), 8),
                                      int(p.get("uid", 0)), int(p.get("gid", 0))))
        elif kind == "symlink":
            entries.append(LayerEntry(p["path"], SYMLINK, 0o777, link=p["target"]))
        else:
            raise SupplyChainError(f"{spec.path}: paths[{i}].type must be dir or symlink")
    for i, f in enumerate(spec.files):
        if not Path(f["src"]).is_file():
            raise SupplyChainError(f"{spec.path}: files[{i}].src {f['src']} is not a file")
        entries.append(LayerEntry(f["dst"], FILE, int(str(f.get("mode", "0644")), 8), int(f.get("uid", 0)),
                                  int(f.get("gid", 0)), data=Path(f["src"]).read_bytes()))
    return entries


def compute_with_capabilities(spec: ImageSpec, view: dict[str, LayerEntry]) -> list[LayerEntry]:
    """Copies of the files named in `capabilities`, carrying the security.capability xattr
    (the last layer wins, so they override the package's copy)."""
    out = []
    for path, names in sorted(spec.capabilities.items()):
        entry = view.get(compute_normal_path(path))
        if entry is None or entry.kind != FILE:
            raise SupplyChainError(f"{spec.path}: capabilities: {path} is not a file in the image")
        xattrs = dict(entry.xattrs)
        xattrs["security.capability"] = compute_capability_xattr(names, f"{spec.path}: capabilities {path}")
        out.append(dataclasses.replace(entry, xattrs=tuple(sorted(xattrs.items()))))
    return out


def compute_wheel_entries(wheel: Path, target: str) -> tuple[list[LayerEntry], PythonDist]:
    """Unpack a wheel (PEP 427: a zip whose root goes into site-packages) under `target`."""
    try:
        data = Path(wheel).read_bytes()
        zipfile.ZipFile(wheel).close()
    except OSError as exc:
        raise SupplyChainError(f"wheel {wheel}: {exc.strerror}") from None
    except zipfile.BadZipFile:
        raise SupplyChainError(f"wheel {wheel}: not a wheel (not a zip file)") from None
    entries, meta = [], None
    with zipfile.ZipFile(wheel) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            content = zf.read(info)
            mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
            name = info.filename
            top, _, rest = name.partition("/")
            if top.endswith(".data"):  # PEP 427 "spread": purelib/platlib into site-packages
                scheme, _, rest = rest.partition("/")
                if scheme not in ("purelib", "platlib"):
                    continue  # scripts/headers/data: not needed to import the packages
                name = rest
            entries.append(LayerEntry(posixpath.join(target, name), FILE, mode, data=content))
            if info.filename.endswith(".dist-info/METADATA") and info.filename.count("/") == 1:
                meta = email.parser.BytesParser().parsebytes(content)
    if meta is None:
        raise SupplyChainError(f"wheel {wheel.name}: no .dist-info/METADATA")
    return entries, PythonDist(meta["Name"], meta["Version"], Path(wheel).name, hashlib.sha256(data).hexdigest())


def compute_resolved(view: dict[str, LayerEntry], path: str) -> LayerEntry | None:
    """The entry `path` refers to in the merged file system `view`, following symlinks in every
    component (at most 40 hops, like Linux's MAXSYMLINKS); None if it does not exist."""
    parts = compute_normal_path(path).split("/")
    current: list[str] = []
    hops = 0
    while parts:
        current.append(parts.pop(0))
        entry = view.get("/".join(current))
        if entry is None:
            return None
        if entry.kind == SYMLINK:
            hops += 1
            if hops > 40:
                return None
            base = "" if entry.link.startswith("/") else "/".join(current[:-1])
            target = posixpath.normpath(posixpath.join("/", base, entry.link)).lstrip("/")
            parts = (target.split("/") if target else []) + parts
            current = []
    return view.get("/".join(current)) if current else None


def check_policy(spec: ImageSpec, view: dict[str, LayerEntry]) -> list[str]:
    """Image policy: numeric non-root user, entrypoint present and executable, none of the
    forbidden paths (shells, package managers). Returns one line per check; raises on failure."""
    lines = [f"user {spec.run_as[0]}:{spec.run_as[1]} is numeric and non-root"]
    entry = compute_resolved(view, spec.entrypoint[0])
    if entry is None or entry.kind != FILE or not entry.mode & 0o111:
        raise SupplyChainError(f"image {spec.name}: entrypoint {spec.entrypoint[0]} is not an executable file")
    lines.append(f"entrypoint {spec.entrypoint[0]} is an executable file")
    present = [p for p in spec.forbidden if compute_resolved(view, p) is not None]
    if present:
        raise SupplyChainError(f"image {spec.name}: contains forbidden path /{present[0]} (shell or package manager)")
    lines.append(f"no shell or package manager ({len(spec.forbidden)} paths checked)")
    return lines


def apply_build(spec_path: Path, out: Path, tag: str, cache: Cache, wheels: list[Path], epoch: int) -> BuildResult:
    """Build the image of `spec_path` into the OCI layout `out`, tagged `tag`.

    `wheels` are the Python wheels to install; `epoch` is SOURCE_DATE_EPOCH (seconds) used for
    every time stamp. Raises SupplyChainError (one line) on any refusal."""
    spec = read_spec(spec_path)
    lock = read_lock(spec.lock)
    check_lock_fresh(lock, spec.lock)
    pkgs = compute_target_packages(lock, spec.target)
    paths = apply_fetch_verified(lock, spec.lock.parent, pkgs, cache)
    owners = {u["name"]: int(u["uid"]) for u in spec.users}
    groups = {g["name"]: int(g["gid"]) for g in spec.groups}
    pkg_entries: list[LayerEntry] = []
    file_owner: dict[str, str] = {}
    for pkg, path in zip(pkgs, paths):
        entries = compute_payload_entries(lock["kind"], path, owners, groups)
        file_owner.update({compute_normal_path(e.path): f"{lock['kind']}:{pkg['id']}" for e in entries})
        pkg_entries += entries
    layers = [compute_layer(pkg_entries, epoch, f"{lock['kind']} packages of target {spec.target}")]
    account_entries = compute_account_entries(spec)
    if lock["kind"] == "deb":
        account_entries.append(LayerEntry(STATUS_PATH, FILE, 0o644, data=compute_dpkg_status(paths)))
    else:
        account_entries.append(LayerEntry(RPMDB_PATH, FILE, 0o644, data=compute_rpmdb(paths, epoch)))
    layers.append(compute_layer(account_entries, epoch, "accounts and paths"))
    py_entries, dists = [], []
    if spec.python_lock is not None:
        check_python_lock_fresh(spec.python_lock, _pyproject(), list(spec.python_exclude))
        wheels = list(wheels) + apply_fetch_wheels(spec.python_lock, cache.root / "wheels")
    for wheel in sorted(wheels, key=lambda w: Path(w).name):
        entries, dist = compute_wheel_entries(Path(wheel), spec.python_target)
        file_owner.update({compute_normal_path(e.path): f"pypi:{dist.name}=={dist.version}" for e in entries})
        py_entries += entries
        dists.append(dist)
    if py_entries:
        layers.append(compute_layer(py_entries, epoch, "python wheels"))
    view: dict[str, LayerEntry] = {}
    for entries in (pkg_entries, account_entries, py_entries):
        for e in entries:
            path = compute_normal_path(e.path)
            if entries is account_entries:
                file_owner[path] = BUILD_REF
            view[path] = dataclasses.replace(e, path=path)
            parent = posixpath.dirname(path)
            while parent and parent not in view:
                view[parent] = LayerEntry(parent, DIR, 0o755)
                parent = posixpath.dirname(parent)
    cap_entries = compute_with_capabilities(spec, view)
    if cap_entries:
        layers.append(compute_layer(cap_entries, epoch, "file capabilities"))
        view.update({e.path: e for e in cap_entries})
    check_policy(spec, view)
    layout = Layout(out)
    config = ImageConfig(user=f"{spec.run_as[0]}:{spec.run_as[1]}", entrypoint=list(spec.entrypoint),
                         cmd=list(spec.cmd), env=spec.environment, created=epoch, labels=spec.labels,
                         exposed_ports=list(spec.exposed_ports), architecture=spec.architecture)
    annotations = {"org.opencontainers.image.title": spec.name,
                   "org.opencontainers.image.version": tag,
                   "org.opencontainers.image.created": compute_created(epoch)}
    desc = layout.apply_image(config, layers, annotations)
    layout.apply_tag(desc, tag)
    return BuildResult(spec, layout, tag, desc, lock["kind"], pkgs, dists, lock["repositories"],
                       compute_files(view, file_owner), compute_links(view, file_owner))
