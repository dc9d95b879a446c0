"""Signed git tags checked against pinned keys only (throw-away keys from the RPM world)."""
import os
import subprocess

import pytest

from supplychain.errors import SupplyChainError
from supplychain.gittag import check_git_tag
from supplychain.keys import Keyring


@pytest.fixture
def repo(rpm_world, tmp_path):
    env = {**os.environ, "GNUPGHOME": str(rpm_world.gnupg), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "gpg.program=gpg", *args], env=env,
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", "release")
    for key in ("repo", "stranger", "retired"):
        git("tag", "-s", "-u", rpm_world.fingerprints[key], "-m", key, f"v-{key}")
    git("tag", "-a", "-m", "unsigned", "v-unsigned")
    return tmp_path, git("rev-parse", "HEAD")


def test_tag_signed_by_a_pinned_key_verifies_and_points_at_the_commit(rpm_world, repo):
    path, head = repo
    assert check_git_tag(path, "v-repo", Keyring([rpm_world.keys["repo"]]), head) == rpm_world.fingerprints["repo"]
    with pytest.raises(SupplyChainError, match=f"^tag v-repo points at {head}, expected 0+$"):
        check_git_tag(path, "v-repo", Keyring([rpm_world.keys["repo"]]), "0" * 40)


@pytest.mark.parametrize("tag,keys,expected", [
    pytest.param("v-unsigned", ["repo"], r"^tag v-unsigned: not signed", id="unsigned"),
    pytest.param("v-stranger", ["repo"], r"^tag v-stranger: signed by unpinned key [0-9a-f]+$", id="unpinned-key"),
    pytest.param("v-retired", ["retired-revoked"], r"^tag v-retired: signing key [0-9A-F]{40} is revoked$", id="revoked-key"),
])
def test_badly_signed_tags_are_refused(rpm_world, repo, tag, keys, expected):
    path, _ = repo
    files = [rpm_world.revoked_key if k == "retired-revoked" else rpm_world.keys[k] for k in keys]
    with pytest.raises(SupplyChainError, match=expected):
        check_git_tag(path, tag, Keyring(files))
