"""Who may do what on NATS: one user per service role, its subject permissions, its credentials.

Owns:

* :data:`ROLES` - the NATS users of an installation: one per service (all replicas of a service,
  and all virt-handlers, share it) plus ``admin`` for operator tools that read the store
  directly (``virtctl trace``, benches, test fixtures);
* :func:`compute_permissions` - the ``permissions`` block of a role, derived from the "writes"
  column of docs/architecture.md at bucket granularity: a KV write is a publish to
  ``$KV.<bucket>.<key>`` (a delete is a marker published there too), so a role may publish only
  to the buckets its service writes; reads (JetStream API lookups, consumers delivering to the
  client's inbox) are open to every role; deleting or re-configuring a bucket's stream is
  ``admin``'s alone; purging (compaction) is ``admin``'s and virt-api's (:data:`MAINTAINERS`);
* :func:`compute_writable_plurals` - what a role's store may write, so that a deletion's cascade
  leaves other buckets' dependents to the garbage collector instead of being refused;
* :class:`NatsCredentials` and their file (JSON, mode 0600: :func:`write_credentials`,
  :func:`read_credentials`);
* :func:`compute_authorization_config` - nats-server's ``authorization`` block with bcrypt'd
  passwords (:func:`hash_password`).

Subject and permission syntax: nats-server's configuration reference
(https://docs.nats.io/running-a-nats-service/configuration/securing_nats/authorization):
``allow``/``deny`` lists per ``publish``/``subscribe``, ``*`` one token, ``>`` the rest,
``allow_responses`` lets a replier publish to the reply subject of a request it received.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.api.resources import RESOURCES
from shared.events import SUBJECT_PREFIX
from shared.events_recorder import EVENTS_PLURAL
from shared.store.compaction import META
from shared.store.keys import stream_name
from shared.store.ownership import OWNERS
from shared.trace_store import compute_stream_name

ADMIN = "admin"
#: The NATS users, one per service plus the operator's.
ROLES: tuple[str, ...] = ("virt-api", "virt-controller", "scheduler-bridge", "virt-migration", "virt-snapshot",
                          "virt-handler", ADMIN)

_VMS, _VMIS, _VMIMS = "virtualmachines", "virtualmachineinstances", "virtualmachineinstancemigrations"
_NODES, _LEASES, _PVCS = "nodes", "leases", "persistentvolumeclaims"

#: Every bucket (resource plural) an installation holds: the API's resources, Events and the
#: owner index.
ALL_PLURALS: tuple[str, ...] = (*(r.plural for r in RESOURCES), EVENTS_PLURAL, OWNERS)
#: Every bucket a service may have to make on first use: :data:`ALL_PLURALS` and compaction's
#: watermark bucket, which every watch from a resourceVersion reads (written by compaction only).
CREATED_PLURALS: tuple[str, ...] = (*ALL_PLURALS, META)

#: The buckets each service writes (docs/architecture.md, "The services and what each owns").
#: Every writer records Events and may index owners (a hint bucket checked against the
#: dependent's ownerReferences, so a stale or forged entry deletes nothing).
WRITTEN_PLURALS: dict[str, tuple[str, ...]] = {
    "virt-api": ALL_PLURALS,
    "virt-controller": (_VMS, _VMIS, "virtualmachinepools", "virtualmachineinstancereplicasets", _LEASES,
                        EVENTS_PLURAL, OWNERS),
    # leases: scheduler-bridge replicas elect one leader like the other controllers
    "scheduler-bridge": (_VMIS, _VMIMS, _LEASES, EVENTS_PLURAL, OWNERS),
    "virt-migration": (_VMIMS, _VMIS, _LEASES, EVENTS_PLURAL, OWNERS),
    "virt-snapshot": (_VMS, "virtualmachinesnapshots", "virtualmachinesnapshotcontents", "virtualmachinerestores",
                      _PVCS, _LEASES, EVENTS_PLURAL, OWNERS),
    "virt-handler": (_VMIS, _NODES, EVENTS_PLURAL, OWNERS),
}

#: Roles that run the store's maintenance (:meth:`shared.store.ObjectStore.maintain`): compaction
#: purges old delete markers from every bucket's stream and raises the watermark in
#: ``<prefix>_meta``; the garbage collector deletes dependents of gone owners in any bucket.
#: virt-api is the store's gatekeeper (the only service writing every bucket), as
#: kube-apiserver is etcd's and compacts it (``--etcd-compaction-interval``).
MAINTAINERS = frozenset({"virt-api"})

_HANDLER_COMMAND = f"{SUBJECT_PREFIX}.handler.*.command"
_HANDLER_CONSOLE = f"{SUBJECT_PREFIX}.handler.*.console"


def _console(direction: str) -> str:
    return f"{SUBJECT_PREFIX}.console.*.{direction}"


#: Bus subjects (shared/events.py, shared/console.py) each role publishes to / subscribes to.
BUS_PUBLISH: dict[str, tuple[str, ...]] = {
    "virt-api": (_HANDLER_COMMAND, _HANDLER_CONSOLE, _console("in"), _console("close")),
    "virt-snapshot": (_HANDLER_COMMAND,),  # freeze, unfreeze, backups
    "virt-handler": (f"{SUBJECT_PREFIX}.domain.>", _console("out"), _console("close")),
}
BUS_SUBSCRIBE: dict[str, tuple[str, ...]] = {
    "virt-api": (_console("out"), _console("close")),
    "virt-handler": (_HANDLER_COMMAND, _HANDLER_CONSOLE, _console("in"), _console("close")),
}
#: Roles that answer requests (their replies go to the requester's inbox).
REPLIERS = frozenset({"virt-handler"})

#: JetStream API requests that only read (stream info and lists, message gets, ephemeral
#: consumers delivering to the client's own inbox, flow-control answers): open to every role.
_JS_READS: tuple[str, ...] = (
    "$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.*",
    "$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>",
    "$JS.API.CONSUMER.CREATE.*", "$JS.API.CONSUMER.CREATE.*.>", "$JS.API.CONSUMER.INFO.*.*",
    "$JS.API.CONSUMER.DELETE.*.*", "$JS.FC.>",
)


def compute_permissions(role: str, bucket_prefix: str = "kv_") -> dict[str, Any]:
    """The nats-server ``permissions`` block of ``role`` for an installation whose buckets are
    named ``<bucket_prefix><plural>``.

    Shape: ``{"publish": {"allow": [...]}, "subscribe": {"allow": [...]}}`` plus
    ``"allow_responses": True`` for repliers; ``admin`` may publish and subscribe to everything
    (``>``). Every service role may: publish to ``$KV.<bucket>.>`` of the buckets it writes
    (:data:`WRITTEN_PLURALS`), create (never update, purge or delete) the streams of the
    installation's buckets (a service makes a missing bucket on first use), create and update
    the trace stream and publish its spans, make the read-only JetStream API requests, use its
    bus subjects (:data:`BUS_PUBLISH`, :data:`BUS_SUBSCRIBE`) and receive on ``_INBOX.>``
    (replies, consumer deliveries). A maintainer (:data:`MAINTAINERS`: virt-api) may also
    purge the streams of the installation's buckets and write ``<prefix>_meta``, what
    compaction does (virt-api is the store's gatekeeper, as kube-apiserver compacts etcd).
    Raises ValueError for a role not in :data:`ROLES`.
    """
    if role not in ROLES:
        raise ValueError(f"unknown NATS role {role!r} (known: {', '.join(ROLES)})")
    if role == ADMIN:
        return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
    traces = compute_stream_name(bucket_prefix)
    publish = [
        *(f"$KV.{bucket_prefix}{plural}.>" for plural in WRITTEN_PLURALS[role]),
        *(f"$JS.API.STREAM.CREATE.{stream_name(bucket_prefix + plural)}" for plural in CREATED_PLURALS),
        f"$JS.API.STREAM.CREATE.{traces}", f"$JS.API.STREAM.UPDATE.{traces}", f"{bucket_prefix}traces.>",
        *_JS_READS,
        *BUS_PUBLISH.get(role, ()),
    ]
    if role in MAINTAINERS:
        publish += [f"$KV.{bucket_prefix}{META}.>",
                    *(f"$JS.API.STREAM.PURGE.{stream_name(bucket_prefix + plural)}" for plural in ALL_PLURALS)]
    permissions: dict[str, Any] = {
        "publish": {"allow": publish},
        "subscribe": {"allow": ["_INBOX.>", *BUS_SUBSCRIBE.get(role, ())]},
    }
    if role in REPLIERS:
        permissions["allow_responses"] = True
    return permissions


def compute_writable_plurals(user: str) -> frozenset[str] | None:
    """The resource plurals (buckets without prefix) NATS user ``user`` may write: a service
    role's :data:`WRITTEN_PLURALS`; None (no limit known) for ``admin`` and for a user that is
    not one of :data:`ROLES`."""
    if user == ADMIN or user not in WRITTEN_PLURALS:
        return None
    return frozenset(WRITTEN_PLURALS[user])


@dataclass(frozen=True)
class NatsCredentials:
    """A NATS user and its password (user/password authentication)."""

    user: str
    password: str


def generate_credentials(user: str) -> NatsCredentials:
    """Credentials for ``user`` with a random 256-bit password (URL-safe text)."""
    return NatsCredentials(user=user, password=secrets.token_urlsafe(32))


def write_credentials(path: Path, credentials: NatsCredentials) -> None:
    """Write ``{"user", "password"}`` as JSON to ``path`` with mode 0600 (also when the file
    existed with a wider mode); parent directories are made (0700 when new)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"user": credentials.user, "password": credentials.password}, fh)
        fh.write("\n")


def apply_credentials(directory: Path, roles: Iterable[str] = ROLES) -> dict[str, Path]:
    """``<directory>/<role>.json`` for each of ``roles`` (role -> path): a file that exists and
    reads is kept (running services hold its password), any other is written anew, mode 0600.
    Raises ValueError for a role not in :data:`ROLES`."""
    files: dict[str, Path] = {}
    for role in roles:
        if role not in ROLES:
            raise ValueError(f"unknown NATS role {role!r} (known: {', '.join(ROLES)})")
        path = directory / f"{role}.json"
        try:
            if read_credentials(path).user == role:
                path.chmod(0o600)
                files[role] = path
                continue
        except (OSError, ValueError):
            pass
        write_credentials(path, generate_credentials(role))
        files[role] = path
    return files


def read_credentials(path: Path) -> NatsCredentials:
    """The credentials in ``path`` (as :func:`write_credentials` writes them). Raises OSError
    when unreadable, ValueError naming the file when it is not such a JSON object."""
    try:
        data = json.loads(Path(path).read_text())
        user, password = data["user"], data["password"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a NATS credentials file (JSON with user and password)") from err
    if not isinstance(user, str) or not isinstance(password, str) or not user:
        raise ValueError(f"{path}: not a NATS credentials file (JSON with user and password)")
    return NatsCredentials(user=user, password=password)


#: bcrypt cost: the passwords are 256 random bits, so stretching adds nothing against guessing;
#: nats-server checks the hash on every connect, which a high cost would make slow.
BCRYPT_ROUNDS = 10


def hash_password(password: str) -> str:
    """bcrypt hash of ``password`` (``$2b$10$...``, which nats-server accepts in place of the
    clear password)."""
    import bcrypt  # the installation's extra: only virtctl writes server configs

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()


@dataclass(frozen=True)
class AuthorizationEntry:
    """One user of nats-server's ``authorization`` block: name, bcrypt hash, permissions."""

    user: str
    password_hash: str
    permissions: dict[str, Any]


def hash_authorization_entries(credential_files: Mapping[str, Path], bucket_prefix: str = "kv_"
                               ) -> list[AuthorizationEntry]:
    """One :class:`AuthorizationEntry` per role -> credentials file: the file's user, its
    password bcrypt'd, the role's :func:`compute_permissions`. Raises what
    :func:`read_credentials` raises."""
    entries = []
    for role, path in credential_files.items():
        creds = read_credentials(path)
        entries.append(AuthorizationEntry(creds.user, hash_password(creds.password),
                                          compute_permissions(role, bucket_prefix)))
    return entries


def compute_authorization_config(entries: Sequence[AuthorizationEntry] | Iterable[AuthorizationEntry]) -> str:
    """nats-server's ``authorization { users: [...] }`` block for ``entries`` (text for the
    server configuration; values JSON-quoted so ``$`` in hashes and subjects is never read as a
    configuration variable). A server with this block refuses connections without a listed
    user (no anonymous access)."""
    users = [
        f"    {{user: {json.dumps(e.user)}, password: {json.dumps(e.password_hash)}, "
        f"permissions: {json.dumps(e.permissions)}}}"
        for e in entries
    ]
    return "authorization {\n  users: [\n" + ",\n".join(users) + "\n  ]\n}\n"
