"""shared.nats_auth: the permission table of each role, credentials files, the server's
authorization block. (That nats-server enforces them: tests/integration/store/test_nats_security.py.)"""

from __future__ import annotations

import re
import stat

import bcrypt
import pytest

from shared.nats_auth import (
    ALL_PLURALS,
    ROLES,
    AuthorizationEntry,
    NatsCredentials,
    compute_authorization_config,
    compute_permissions,
    compute_writable_plurals,
    generate_credentials,
    hash_password,
    read_credentials,
    write_credentials,
)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more trailing tokens."""
    pattern_tokens, tokens = pattern.split("."), subject.split(".")
    for i, token in enumerate(pattern_tokens):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or (token != "*" and token != tokens[i]):
            return False
    return len(tokens) == len(pattern_tokens)


def may_publish(role: str, subject: str, prefix: str = "kv_") -> bool:
    return any(subject_matches(p, subject) for p in compute_permissions(role, prefix)["publish"]["allow"])


def may_subscribe(role: str, subject: str) -> bool:
    return any(subject_matches(p, subject) for p in compute_permissions(role)["subscribe"]["allow"])


def kv(plural: str, key: str = "default.vm1") -> str:
    return f"$KV.kv_{plural}.{key}"


#: role -> the buckets it may write (docs/architecture.md's "writes" column)
WRITES = {
    "virt-api": set(ALL_PLURALS),
    "virt-controller": {"virtualmachines", "virtualmachineinstances", "virtualmachinepools",
                        "virtualmachineinstancereplicasets", "leases", "events", "_owners"},
    "scheduler-bridge": {"virtualmachineinstances", "virtualmachineinstancemigrations", "leases", "events", "_owners"},
    "virt-migration": {"virtualmachineinstancemigrations", "virtualmachineinstances", "leases", "events", "_owners"},
    "virt-snapshot": {"virtualmachines", "virtualmachinesnapshots", "virtualmachinesnapshotcontents",
                      "virtualmachinerestores", "persistentvolumeclaims", "leases", "events", "_owners"},
    "virt-handler": {"virtualmachineinstances", "nodes", "events", "_owners"},
}


def test_roles_are_the_services_and_admin():
    assert ROLES == ("virt-api", "virt-controller", "scheduler-bridge", "virt-migration", "virt-snapshot",
                     "virt-handler", "admin")
    assert set(ALL_PLURALS) >= {"virtualmachines", "virtualmachineinstances", "nodes", "leases", "events",
                                "_owners", "kubevirts", "migrationpolicies", "persistentvolumeclaims"}


@pytest.mark.parametrize("role", sorted(WRITES))
@pytest.mark.parametrize("plural", ALL_PLURALS)
def test_kv_writes_follow_the_ownership_table(role, plural):
    assert may_publish(role, kv(plural)) is (plural in WRITES[role])


def test_handler_writes_vmi_status_but_never_a_vm_spec():
    assert may_publish("virt-handler", kv("virtualmachineinstances"))
    assert not may_publish("virt-handler", kv("virtualmachines"))
    assert not may_publish("virt-handler", kv("kubevirts", "kubevirt.kubevirt"))


def test_bucket_prefix_names_the_installation():
    assert may_publish("virt-handler", "$KV.test1_virtualmachineinstances.a.b", prefix="test1_")
    assert not may_publish("virt-handler", "$KV.kv_virtualmachineinstances.a.b", prefix="test1_")
    assert may_publish("virt-handler", "$JS.API.STREAM.CREATE.KV_test1_nodes", prefix="test1_")
    assert may_publish("virt-handler", "test1_traces.0af7651916cd43dd8448eb211c80319c", prefix="test1_")
    assert may_publish("virt-handler", "$JS.API.STREAM.UPDATE.TEST1_TRACES", prefix="test1_")


@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
@pytest.mark.parametrize("subject", [
    "$JS.API.STREAM.DELETE.KV_kv_virtualmachines",
    "$JS.API.STREAM.UPDATE.KV_kv_virtualmachines",
    "$JS.API.STREAM.MSG.DELETE.KV_kv_virtualmachines",
    "$JS.API.STREAM.CREATE.OTHER",
    "$JS.API.STREAM.PURGE.KV_TRACES",
    "$JS.API.STREAM.PURGE.OTHER",
    "$JS.API.CONSUMER.DURABLE.CREATE.KV_kv_virtualmachines.d",
    "kubevirt.v1.unknown",
    "$SYS.REQ.SERVER.PING",
])
def test_only_admin_reshapes_streams_or_leaves_the_known_subjects(role, subject):
    assert not may_publish(role, subject)
    assert may_publish("admin", subject)


#: What compaction publishes (shared.store.compaction): purges of the buckets' streams and the
#: watermark in <prefix>_meta.
COMPACTION_SUBJECTS = [
    "$JS.API.STREAM.PURGE.KV_kv_virtualmachines",
    "$JS.API.STREAM.PURGE.KV_kv_events",
    "$JS.API.STREAM.PURGE.KV_kv__owners",
    "$KV.kv__meta.compact.bm9kZXM",
]


@pytest.mark.parametrize("subject", COMPACTION_SUBJECTS)
@pytest.mark.parametrize("role", ROLES)
def test_only_virt_api_and_admin_compact_the_store(role, subject):
    # virt-api runs the store maintenance (the store's gatekeeper, as kube-apiserver compacts etcd)
    assert may_publish(role, subject) is (role in ("virt-api", "admin"))


def test_compaction_rights_follow_the_bucket_prefix():
    assert may_publish("virt-api", "$JS.API.STREAM.PURGE.KV_test1_nodes", prefix="test1_")
    assert may_publish("virt-api", "$KV.test1__meta.compact.x", prefix="test1_")
    assert not may_publish("virt-api", "$JS.API.STREAM.PURGE.KV_kv_nodes", prefix="test1_")
    assert not may_publish("virt-api", "$KV.kv__meta.compact.x", prefix="test1_")


@pytest.mark.parametrize("role", sorted(WRITES))
def test_a_role_store_knows_the_buckets_it_may_write(role):
    assert compute_writable_plurals(role) == frozenset(WRITES[role])


def test_admin_and_foreign_users_have_no_known_limit():
    assert compute_writable_plurals("admin") is None
    assert compute_writable_plurals("someone-else") is None


@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
@pytest.mark.parametrize("subject", [
    "$JS.API.INFO", "$JS.API.STREAM.INFO.KV_kv_nodes", "$JS.API.STREAM.LIST", "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.MSG.GET.KV_kv_virtualmachines", "$JS.API.CONSUMER.CREATE.KV_kv_nodes",
    "$JS.API.CONSUMER.CREATE.KV_kv_nodes.c1.$KV.kv_nodes.>", "$JS.API.CONSUMER.DELETE.KV_kv_nodes.c1",
    "$JS.FC.KV_kv_nodes.abc.1", "$JS.API.STREAM.CREATE.KV_kv_virtualmachines", "$JS.API.STREAM.CREATE.KV_TRACES",
    # a watch from a resourceVersion reads the compaction watermark (shared.store.compaction),
    # making its bucket when missing: a restarted virt-snapshot never got its lease without it
    "$JS.API.STREAM.CREATE.KV_kv__meta",
])
def test_every_role_reads_and_makes_missing_buckets(role, subject):
    assert may_publish(role, subject)
    assert may_subscribe(role, "_INBOX.abc.1")


def test_bus_subjects_per_role():
    command, console_open = "kubevirt.v1.handler.node1.command", "kubevirt.v1.handler.node1.console"
    assert may_publish("virt-api", command) and may_publish("virt-api", console_open)
    assert may_publish("virt-snapshot", command) and not may_publish("virt-snapshot", console_open)
    assert not may_publish("virt-controller", command)
    assert not may_publish("virt-handler", command)  # a handler never commands another node
    assert may_subscribe("virt-handler", command) and may_subscribe("virt-handler", console_open)
    assert not may_subscribe("virt-api", command)
    assert may_publish("virt-handler", "kubevirt.v1.domain.node1.default.vm1")
    assert may_publish("virt-handler", "kubevirt.v1.console.s1.out") and may_subscribe("virt-api", "kubevirt.v1.console.s1.out")
    assert may_publish("virt-api", "kubevirt.v1.console.s1.in") and may_subscribe("virt-handler", "kubevirt.v1.console.s1.in")
    assert not may_publish("virt-handler", "kubevirt.v1.console.s1.in")
    assert not may_subscribe("virt-controller", "kubevirt.v1.console.s1.out")


def test_only_the_handler_answers_requests():
    assert [r for r in ROLES if compute_permissions(r).get("allow_responses")] == ["virt-handler"]


def test_unknown_role_is_refused():
    with pytest.raises(ValueError, match="unknown NATS role 'virt-foo'"):
        compute_permissions("virt-foo")


def test_credentials_file_is_0600_json(tmp_path):
    path = tmp_path / "credentials" / "virt-api.json"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    creds = generate_credentials("virt-api")
    write_credentials(path, creds)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_credentials(path) == creds
    assert len(creds.password) >= 43 and creds.password != generate_credentials("virt-api").password


@pytest.mark.parametrize("text", ["", "[]", '{"user": "a"}', '{"user": "", "password": "p"}', '{"user": 1, "password": "p"}'])
def test_malformed_credentials_file_is_one_readable_error(tmp_path, text):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a NATS credentials file")):
        read_credentials(path)


def test_authorization_config_holds_bcrypt_hashes_not_passwords():
    creds = NatsCredentials("virt-handler", "s3cret-password")
    digest = hash_password(creds.password)
    assert digest.startswith("$2b$10$") and bcrypt.checkpw(creds.password.encode(), digest.encode())
    text = compute_authorization_config([AuthorizationEntry("virt-handler", digest, compute_permissions("virt-handler"))])
    assert creds.password not in text
    assert f'password: "{digest}"' in text
    assert text.startswith("authorization {\n  users: [\n") and '"allow_responses": true' in text
    assert '"$KV.kv_virtualmachineinstances.>"' in text
