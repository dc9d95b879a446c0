"""SLSA v1 provenance predicate for an image build (slsa-framework/slsa docs/spec/v1.0/provenance.md).

Owns what the provenance claims: the build type, the caller-controlled parameters (spec, tag),
and `resolvedDependencies` listing the git commit and every locked package by sha256 and every
wheel, so a verifier can compare them with the lock and the SBOM.
"""
from __future__ import annotations

from supplychain.oci import compute_created

BUILD_TYPE = "https://github.com/kubevirt-py/kubevirt-py/blob/main/docs/supply-chain.md#build-type-v1"


def compute_provenance(build, builder_id: str, source_uri: str, git_commit: str, epoch: int,
                       local_changes: bool = False) -> dict:
    """The SLSA v1 predicate for a builder.BuildResult. `git_commit` is HEAD of the source tree
    the build ran in ("" outside git: no source entry); `local_changes` marks that tree as
    differing from the commit (annotation `localChanges: true` on the source entry and
    `internalParameters.sourceLocalChanges`), so nobody reads the commit as the exact source."""
    deps: list[dict] = []
    if git_commit:
        source: dict = {"uri": f"git+{source_uri}", "digest": {"gitCommit": git_commit}}
        if local_changes:
            source["annotations"] = {"localChanges": True}
        deps.append(source)
    for pkg in build.packages:
        deps.append({"uri": pkg["urls"][0], "name": pkg["id"], "digest": {"sha256": pkg["sha256"]}})
    for dist in build.python:
        deps.append({"uri": f"file:{dist.filename}", "name": f"{dist.name}=={dist.version}",
                     "digest": {"sha256": dist.sha256}})
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"spec": build.spec.path.name, "image": build.spec.name, "tag": build.tag},
            "internalParameters": {"sourceDateEpoch": epoch, "lockKind": build.kind,
                                   **({"sourceLocalChanges": True} if local_changes else {})},
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": builder_id},
            "metadata": {"invocationId": f"{build.spec.name}@{build.digest}",
                         "startedOn": compute_created(epoch), "finishedOn": compute_created(epoch)},
        },
    }
