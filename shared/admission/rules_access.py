"""VMI access credential rules (kubevirt-api.md §6.3 rule 48; KubeVirt
vmi-create-admitter.go validateAccessCredentials)."""

from __future__ import annotations

from typing import Any

from shared.admission.cluster import ClusterConfig
from shared.admission.fields import at, invalid_value, required
from shared.errors import StatusCause

PROPAGATION_VOLUMES = {"noCloud": "cloudInitNoCloud", "configDrive": "cloudInitConfigDrive"}


def check_access_credentials(spec: dict[str, Any], path: str, cluster: ClusterConfig) -> list[StatusCause]:
    """Each credential: exactly one type, a secret source, exactly one propagation method; the
    noCloud/configDrive methods need the matching cloud-init volume."""
    causes: list[StatusCause] = []
    volumes = spec.get("volumes") or []
    for i, credential in enumerate(spec.get("accessCredentials") or []):
        field = at(path, "accessCredentials", i)
        kinds = [k for k in ("sshPublicKey", "userPassword") if k in credential]
        if len(kinds) != 1:
            causes.append(invalid_value(field, f"{field} must have exactly one access credential type set"))
            continue
        body = credential[kinds[0]]
        if not ((body.get("source") or {}).get("secret") or {}).get("secretName"):
            causes.append(
                required(
                    at(field, kinds[0], "source"), f"{at(field, kinds[0], 'source')} must have exactly one source set"
                )
            )
        methods = [m for m, v in (body.get("propagationMethod") or {}).items() if v is not None]
        if len(methods) != 1:
            causes.append(
                invalid_value(
                    at(field, kinds[0], "propagationMethod"),
                    f"{at(field, kinds[0], 'propagationMethod')} must have exactly one propagationMethod set",
                )
            )
            continue
        volume_kind = PROPAGATION_VOLUMES.get(methods[0])
        if volume_kind and not any(volume_kind in v for v in volumes):
            causes.append(invalid_value(
                at(field, kinds[0], "propagationMethod", methods[0]),
                f"{at(field, kinds[0], 'propagationMethod', methods[0])} requires a {methods[0]} volume to exist "
                f"when the {methods[0]} propagationMethod is in use.",
            ))
    return causes


ACCESS_RULES = (check_access_credentials,)
