"""Test-only RPM world: throw-away OpenPGP keys (gpg), real RPMs (rpmbuild), signatures
(rpmsign), createrepo_c repositories, and a loopback HTTP server. Recipe: docs/supply-chain.md
§4.3 of the shared research notes. Nothing here ships in the product."""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

EPOCH = 1_700_000_000

SPECS = {
    # name: (version, requires, files {path: (mode, owner, content)}, buildarch)
    "hello": ("1.0", ["libgreet"], {"/usr/bin/hello": ("0755", "root", "hello binary\n")}),
    "libgreet": ("2.1", [], {"/usr/lib64/libgreet.so.2": ("0755", "root", "lib v2\n")}),
    "libgreet-old": ("1.0", [], {"/usr/lib64/libgreet.so.1": ("0755", "root", "lib v1\n")}),
    "greeter-data": ("1.0", ["fakeshell"], {"/usr/share/greeter/motd": ("0644", "qemu", "hi\n")}),
    "fakeshell": ("1.0", [], {"/bin/sh": ("0755", "root", "not really a shell\n")}),
}


def _spec_text(name: str, version: str, requires: list[str], files: dict, epoch: int | None) -> str:
    pkg_name = "libgreet" if name == "libgreet-old" else name
    lines = [f"Name: {pkg_name}", f"Version: {version}", "Release: 1", "Summary: test package",
             "License: MIT", "BuildArch: x86_64"]
    if epoch is not None:
        lines.append(f"Epoch: {epoch}")
    lines += [f"Requires: {r}" for r in requires]
    if pkg_name == "libgreet":
        lines.append(f"Provides: greet-abi = {version}")
    lines += ["%description", "test", "%install"]
    for path, (_, _, content) in files.items():
        lines.append(f"mkdir -p %{{buildroot}}{os.path.dirname(path)}")
        lines.append(f"printf '{content.strip()}\\n' > %{{buildroot}}{path}")
    lines += ["%pre", "echo scriptlet-ran > /tmp/kvb-scriptlet-ran", "%files"]
    for path, (mode, owner, _) in files.items():
        lines.append(f"%attr({mode},{owner},{owner}) {path}")
    return "\n".join(lines) + "\n"


class RpmWorld:
    """Keys and RPMs made once per test session under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.gnupg = root / "gnupg"
        self.gnupg.mkdir(mode=0o700, parents=True)
        self.env = {**os.environ, "GNUPGHOME": str(self.gnupg), "SOURCE_DATE_EPOCH": str(EPOCH)}
        self.keys: dict[str, Path] = {}
        self.fingerprints: dict[str, str] = {}

    def close(self) -> None:
        """Stop the gpg-agents that key generation and signing started in this world's homes."""
        for home in [self.gnupg, *self.root.glob("gnupg-revoke-*")]:
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)

    def gpg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["gpg", "--batch", "--quiet", *args], env=self.env, capture_output=True,
                              text=True, check=check)

    def apply_key(self, name: str, expire: str = "1y", faked_time: str | None = None) -> Path:
        """Make an ed25519 signing key with uid <name@example.test>; export it armored."""
        faked = ["--faked-system-time", faked_time] if faked_time else []
        self.gpg(*faked, "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.test>",
                 "ed25519", "sign", expire)
        out = self.gpg("--with-colons", "--list-keys", f"{name}@example.test").stdout
        fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr"))
        self.fingerprints[name] = fpr
        path = self.root / "keys" / f"{name}.asc"
        path.parent.mkdir(exist_ok=True)
        path.write_text(self.gpg("--armor", "--export", fpr).stdout)
        self.keys[name] = path
        return path

    def apply_revoked_copy(self, name: str) -> Path:
        """Export key `name` together with its revocation certificate (as a publisher would
        after revoking it); the private key stays usable for signing."""
        fpr = self.fingerprints[name]
        rev = (self.gnupg / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
        rev = "\n".join(line[1:] if line.startswith(":") else line for line in rev.splitlines())
        home = self.root / f"gnupg-revoke-{name}"
        home.mkdir(mode=0o700)
        env = {**self.env, "GNUPGHOME": str(home)}
        subprocess.run(["gpg", "--batch", "--quiet", "--import", str(self.keys[name])], env=env, check=True,
                       capture_output=True)
        subprocess.run(["gpg", "--batch", "--quiet", "--import"], input=rev, text=True, env=env, check=True,
                       capture_output=True)
        path = self.root / "keys" / f"{name}-revoked.asc"
        path.write_text(subprocess.run(["gpg", "--batch", "--armor", "--export", fpr], env=env, check=True,
                                       capture_output=True, text=True).stdout)
        return path

    def apply_rpm(self, name: str, epoch: int | None = None, payload: str | None = None) -> Path:
        """Build RPM `name` from SPECS reproducibly (optionally with an rpm `_binary_payload`
        such as "w19.zstdio"); returns the .rpm path (unsigned)."""
        version, requires, files = SPECS[name]
        top = self.root / "rpmbuild" / f"{name}-{epoch}-{payload}"
        (top / "SPECS").mkdir(parents=True, exist_ok=True)
        spec = top / "SPECS" / f"{name}.spec"
        spec.write_text(_spec_text(name, version, requires, files, epoch))
        subprocess.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
                        "--define", "use_source_date_epoch_as_buildtime 1",
                        "--define", "clamp_mtime_to_source_date_epoch 1",
                        "--define", "_buildhost reproducible",
                        *(["--define", f"_binary_payload {payload}"] if payload else []), str(spec)],
                       env=self.env, check=True, capture_output=True)
        [rpm] = list((top / "RPMS").rglob("*.rpm"))
        return rpm

    def apply_sign(self, rpm: Path, key: str, out: Path, faked_time: str | None = None) -> Path:
        """Copy `rpm` to `out` and sign it with key `key` (rpmsign + gpg)."""
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(rpm, out)
        args = ["rpmsign", "--addsign", "--define", "__gpg /usr/bin/gpg",
                "--define", f"_gpg_name {self.fingerprints[key]}"]
        if faked_time:
            args += ["--define", f"_gpg_sign_cmd_extra_args --faked-system-time {faked_time}"]
        subprocess.run(args + [str(out)], env=self.env, check=True, capture_output=True)
        return out


def apply_createrepo(repo_dir: Path) -> None:
    """Write deterministic repodata with createrepo_c."""
    subprocess.run(["createrepo_c", "--quiet", "--revision", "1", "--set-timestamp-to-revision",
                    "--simple-md-filenames", "--no-database", str(repo_dir)], check=True, capture_output=True)


class LoopbackServer:
    """Serve `root` over HTTP on 127.0.0.1 with a free port, in a daemon thread."""

    def __init__(self, root: Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass
