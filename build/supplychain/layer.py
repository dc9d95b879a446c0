"""Reproducible tar layers: the file-system entries of one OCI layer and their byte-exact serialisation.

Owns the rules that make a layer bit-identical across builds (OCI image-spec `layer.md`; the
reproducible-builds checklist in docs/supply-chain.md): entries sorted by path with parents first,
explicit numeric owners and modes, empty user/group names, every mtime = SOURCE_DATE_EPOCH, PAX
format, and gzip with header mtime 0, no file name and a fixed compression level.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import posixpath
import tarfile
from typing import Iterable

GZIP_LEVEL = 6  # fixed so compressed bytes (and the manifest digest) depend only on zlib's version

FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hardlink"


@dataclasses.dataclass(frozen=True)
class LayerEntry:
    """One entry of a layer.

    `path` is relative to the image root without a leading "/" (e.g. "usr/bin/python3");
    `kind` is one of FILE, DIR, SYMLINK, HARDLINK; `data` holds a FILE's bytes; `link` is a
    symlink target or, for a HARDLINK, the root-relative path of the file it points to;
    `mode` is the permission bits (e.g. 0o755, setuid allowed); `uid`/`gid` are numeric owners;
    `xattrs` become PAX `SCHILY.xattr.<name>` records (e.g. security.capability).
    """

    path: str
    kind: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    link: str = ""
    xattrs: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Layer:
    """A serialised layer: `tar` is the uncompressed tar (its sha256 is the diff_id), `blob` the
    gzip-compressed bytes stored in the layout (its sha256 is the manifest layer digest)."""

    tar: bytes
    blob: bytes
    diff_id: str
    digest: str
    comment: str


def compute_normal_path(path: str) -> str:
    """Return `path` relative to the root, normalised ("./usr//bin/" -> "usr/bin").

    Raises ValueError for paths that climb out of the root ("../etc") or are empty."""
    rel = posixpath.normpath("/" + path).lstrip("/")
    if not rel or ".." in path.split("/"):
        raise ValueError(f"path {path!r} is not inside the image root")
    return rel


def compute_tar(entries: Iterable[LayerEntry], mtime: int) -> bytes:
    """Serialise entries into a deterministic PAX tar.

    Later entries with the same path replace earlier ones (so an image spec can override a
    package file); missing parent directories are added as root-owned 0755 dirs; output order is
    sorted by path so parents precede children, with hard links emitted after their targets."""
    by_path: dict[str, LayerEntry] = {}
    for entry in entries:
        path = compute_normal_path(entry.path)
        by_path[path] = dataclasses.replace(entry, path=path)
    for path in list(by_path):
        parent = posixpath.dirname(path)
        while parent and parent not in by_path:
            by_path[parent] = LayerEntry(parent, DIR, 0o755)
            parent = posixpath.dirname(parent)
    ordered = sorted(by_path.values(), key=lambda e: (e.kind == HARDLINK, e.path.split("/")))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in ordered:
            info = tarfile.TarInfo(entry.path + ("/" if entry.kind == DIR else ""))
            info.mode, info.uid, info.gid = entry.mode, entry.uid, entry.gid
            info.uname = info.gname = ""
            info.mtime = mtime
            if entry.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in sorted(entry.xattrs)}
            if entry.kind == FILE:
                info.type, info.size = tarfile.REGTYPE, len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
                continue
            if entry.kind == DIR:
                info.type = tarfile.DIRTYPE
            elif entry.kind == SYMLINK:
                info.type, info.linkname = tarfile.SYMTYPE, entry.link
            elif entry.kind == HARDLINK:
                info.type, info.linkname = tarfile.LNKTYPE, compute_normal_path(entry.link)
            else:
                raise ValueError(f"unknown entry kind {entry.kind!r} for {entry.path}")
            tar.addfile(info)
    return out.getvalue()


def compute_gzip(data: bytes) -> bytes:
    """Compress with a header that carries no time stamp or file name (RFC 1952 MTIME = 0)."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=GZIP_LEVEL, mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


def compute_layer(entries: Iterable[LayerEntry], mtime: int, comment: str) -> Layer:
    """Build a layer from entries; `mtime` is SOURCE_DATE_EPOCH in seconds, `comment` goes into
    the image history ("debs", "accounts", ...)."""
    tar = compute_tar(entries, mtime)
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    blob = _GZIP_MEMO.get(diff_id)
    if blob is None:  # compression dominates build time; equal tars (shared wheel layers) compress once
        blob = compute_gzip(tar)
        _GZIP_MEMO[diff_id] = blob
        while len(_GZIP_MEMO) > 8:
            _GZIP_MEMO.pop(next(iter(_GZIP_MEMO)))
    return Layer(tar, blob, diff_id, "sha256:" + hashlib.sha256(blob).hexdigest(), comment)


_GZIP_MEMO: dict[str, bytes] = {}  # diff_id -> gzip bytes; deterministic, so reuse is exact


def compute_entries_from_tar(tar_bytes: bytes, owners: dict[str, int] | None = None,
                             groups: dict[str, int] | None = None, by_name: bool = False) -> list[LayerEntry]:
    """Read a tar (a package payload from rpm2archive or dpkg-deb) into LayerEntry values.

    With `by_name` (RPM payloads: their owners are names, resolved through the image's accounts
    because no %pre scriptlet creates users), every user/group name must be in `owners`/`groups`
    or ValueError is raised; otherwise the numeric uid/gid are kept. Device nodes and fifos are
    refused: a distroless image has no use for them."""
    owners, groups = owners or {}, groups or {}
    entries = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:*") as tar:
        for info in tar:
            uid, gid = info.uid, info.gid
            if by_name:
                if info.uname not in owners or info.gname not in groups:
                    raise ValueError(f"{info.name} is owned by {info.uname}:{info.gname}, "
                                     f"not an account of the image")
                uid, gid = owners[info.uname], groups[info.gname]
            xattrs = tuple(sorted((k[len("SCHILY.xattr."):], v) for k, v in info.pax_headers.items()
                                  if k.startswith("SCHILY.xattr.")))
            common = dict(mode=info.mode & 0o7777, uid=uid, gid=gid, xattrs=xattrs)
            if info.isdir():
                entries.append(LayerEntry(info.name, DIR, **common))
            elif info.isreg():
                data = tar.extractfile(info).read()
                entries.append(LayerEntry(info.name, FILE, data=data, **common))
            elif info.issym():
                entries.append(LayerEntry(info.name, SYMLINK, link=info.linkname, **common))
            elif info.islnk():
                entries.append(LayerEntry(info.name, HARDLINK, link=info.linkname, **common))
            else:
                raise ValueError(f"unsupported tar entry type for {info.name!r}")
    return entries
