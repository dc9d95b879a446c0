"""Signed git tags: the release's source identity, as KubeVirt publishes it (`git tag -s`,
verified with `git tag -v`; kubevirt/project-infra releng/release-tool).

Owns checking a tag against release-signer keys pinned in the repository rather than whatever
the user's keyring trusts: git runs GnuPG in a throw-away home holding only the pinned keys, the
good signature's primary fingerprint must be pinned, and the key must be neither revoked nor
expired (keys.Keyring). Optionally the tag must point at an expected commit (the release
manifest's gitCommit).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from supplychain.errors import SupplyChainError
from supplychain.keys import Keyring


TEST_KEY_MARK = "TEST KEY"


def check_git_tag(repo: Path, tag: str, keyring: Keyring, commit: str | None = None,
                  allow_test_key: bool = False) -> str:
    """Verify annotated tag `tag` in `repo`; return the signer's primary fingerprint.

    Raises SupplyChainError: "tag v1: not signed", "... signed by unpinned key ...", revoked or
    expired key, a key whose user id says "TEST KEY" unless `allow_test_key`, or "tag v1 points
    at <sha>, expected <sha>"."""
    what = f"tag {tag}"
    check_tag_exists(repo, tag)
    with tempfile.TemporaryDirectory(prefix="kvb-gittag-") as home:
        os.chmod(home, 0o700)
        env = {**os.environ, "GNUPGHOME": home}
        for key in keyring.paths:
            subprocess.run(["gpg", "--batch", "--quiet", "--import", str(key)], env=env, capture_output=True, check=True)
        proc = subprocess.run(["git", "-C", str(repo), "-c", "gpg.program=gpg", "verify-tag", "--raw", tag],
                              env=env, capture_output=True, text=True)
    status = proc.stderr.splitlines()
    if not any(line.startswith("[GNUPG:] NEWSIG") or "SIG " in line for line in status):
        detail = proc.stderr.strip().splitlines()[-1:] or ["no signature"]
        raise SupplyChainError(f"{what}: not signed ({detail[0]})")
    valid = [line.split() for line in status if line.startswith("[GNUPG:] VALIDSIG")]
    if not valid:
        issuer = next((line.split()[2] for line in status if line.startswith("[GNUPG:] ERRSIG")), "")
        raise SupplyChainError(f"{what}: signed by unpinned key {issuer.lower() or '?'}")
    fpr = valid[0][-1]
    key = keyring.check_usable(fpr, what)
    primary = next((k for k in keyring.keys if k.fingerprint == key.primary), key)
    if not allow_test_key and any(TEST_KEY_MARK in uid for uid in primary.uids):
        raise SupplyChainError(f"{what}: signed by test key {primary.fingerprint} ({primary.uids[0]}); "
                               "not a release signer (--allow-test-key to accept it)")
    if commit is not None:
        actual = subprocess.run(["git", "-C", str(repo), "rev-parse", f"{tag}^{{commit}}"], capture_output=True,
                                text=True).stdout.strip()
        if actual != commit:
            raise SupplyChainError(f"{what} points at {actual}, expected {commit}")
    return fpr


def check_tag_exists(repo: Path, tag: str) -> None:
    """SupplyChainError "<repo> is not a git repository" or "tag <tag> does not exist in <repo>"."""
    inside = subprocess.run(["git", "-C", str(repo), "rev-parse", "--git-dir"], capture_output=True, text=True)
    if inside.returncode != 0:
        raise SupplyChainError(f"{repo} is not a git repository")
    found = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "-q", f"refs/tags/{tag}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        raise SupplyChainError(f"tag {tag} does not exist in {repo} (git fetch --tags?)")


def check_tag_names_manifest(repo: Path, tag: str, manifest: bytes) -> str:
    """The tag message must name "release.json sha256:<hex>" of `manifest` (what `kubevirt-build
    release` writes); returns that digest. SupplyChainError otherwise."""
    import hashlib

    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    proc = subprocess.run(["git", "-C", str(repo), "for-each-ref", f"refs/tags/{tag}", "--format=%(contents)"],
                          capture_output=True, text=True)
    named = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("release.json sha256:")]
    if named != [digest]:
        raise SupplyChainError(f"tag {tag}: message names release.json {named[0] if named else 'nothing'}, "
                               f"the file is {digest}")
    return digest
