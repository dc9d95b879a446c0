"""API types of kubevirt-py: KubeVirt's and Kubernetes' objects as msgspec Structs.

The Structs exist to decode, validate, default and describe (OpenAPI) objects; everywhere
else objects travel as plain JSON-ready dicts with KubeVirt's field names.

Modules: ``base`` (the Struct base and shared aliases), ``quantity`` (resource quantities),
``meta`` (ObjectMeta, Status, WatchEvent, Table), ``core`` (Kubernetes core pieces used in
specs), ``domain``/``devices``/``volumes``/``networks`` (the VMI domain), ``vmi``, ``vm``,
``replicaset``, ``migration``, ``migrationpolicy``, ``pool``, ``node``, ``lease``,
``decoding`` (strict decoding with unknown-field detection) and ``resources`` (the registry).
"""
