"""Where an object lives in JetStream: bucket, stream and key names.

One KV bucket per resource plural (``<prefix><plural>``, e.g. ``kv_virtualmachines``; its stream is
``KV_<bucket>``), key ``<namespace>.<name>``. NATS keys allow only ``[-/_=.A-Za-z0-9]`` and ``.``
separates subject tokens, while Kubernetes names may hold dots (DNS-1123 subdomains), so each part
is escaped reversibly and readably: every byte outside ``[A-Za-z0-9-]`` becomes ``_XX`` (upper-case
hex of its UTF-8 byte) — ``vm.web`` is stored as ``vm_2Eweb``. Cluster-scoped objects use the
namespace token ``_``, which no escaped name can produce (escapes are always ``_`` + 2 hex digits).
"""

from __future__ import annotations

import re

CLUSTER_TOKEN = "_"
_ALL_PLAIN = re.compile(r"[A-Za-z0-9-]+")
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9-]+")


def _escape(match: re.Match[str]) -> str:
    return "".join(f"_{b:02X}" for b in match.group().encode())
_ESCAPE = re.compile(r"_([0-9A-F]{2})")
_BUCKET_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def encode_token(part: str) -> str:
    """Escape one name/namespace into a single NATS subject token (non-empty input)."""
    if not part:
        raise ValueError("an empty name cannot be a key token")
    if _ALL_PLAIN.fullmatch(part):
        return part  # the common case: nothing to escape
    return _NOT_PLAIN.sub(_escape, part)


def decode_token(token: str) -> str:
    """Inverse of :func:`encode_token`."""
    raw = _ESCAPE.sub(lambda m: "\0" + m.group(1), token)
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == "\0":
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out += raw[i].encode()
            i += 1
    return out.decode()


def compute_key(namespace: str | None, name: str) -> str:
    """KV key ``<ns-token>.<name-token>``; ``namespace`` None means cluster-scoped."""
    ns = CLUSTER_TOKEN if namespace is None else encode_token(namespace)
    return f"{ns}.{encode_token(name)}"


def compute_key_prefix(namespace: str | None) -> str:
    """The part every key of ``namespace`` (None: cluster-scoped) starts with."""
    return f"{CLUSTER_TOKEN if namespace is None else encode_token(namespace)}."


def parse_key(key: str) -> tuple[str | None, str]:
    """``(namespace or None, name)`` of a key made by :func:`compute_key`."""
    ns, _, name = key.partition(".")
    return (None if ns == CLUSTER_TOKEN else decode_token(ns)), decode_token(name)


def compute_bucket(prefix: str, plural: str) -> str:
    """Bucket name for a resource plural; ValueError when it would not be a valid bucket name."""
    bucket = f"{prefix}{plural}"
    if not _BUCKET_SAFE.match(bucket):
        raise ValueError(f"{bucket!r} is not a valid bucket name (letters, digits, '-' and '_' only)")
    return bucket


def stream_name(bucket: str) -> str:
    return f"KV_{bucket}"


def subject_prefix(bucket: str) -> str:
    """Subject prefix of the bucket's keys (``$KV.<bucket>.``)."""
    return f"$KV.{bucket}."


def compute_filter_subject(bucket: str, namespace: str | None, name: str | None = None) -> str:
    """Subject filter for the whole bucket (namespace None: every namespace, or a cluster-scoped
    resource), one namespace, or one object."""
    pre = subject_prefix(bucket)
    if namespace is None and name is None:
        return f"{pre}>"
    ns_token = CLUSTER_TOKEN if namespace is None else encode_token(namespace)
    return f"{pre}{ns_token}.{encode_token(name) if name else '*'}"
