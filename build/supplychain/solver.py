"""Dependency resolution with libsolv (PyPI `solv`): package names -> exact packages.

Owns turning a target's `install` list into the closed set of packages to put in an image.
RPM repositories are loaded from their primary.xml (`Repo.add_rpmmd`); Debian `Packages`
stanzas are loaded as libsolv solvables built here (the PyPI wheel is compiled without Debian
support), with Depends/Pre-Depends as requires and Provides; versions compare with libsolv's rpm order,
which agrees with dpkg's for the one-version-per-package archive of a stable release. Weak dependencies
(Recommends/Suggests) are ignored on purpose, as bazeldnf does for minimal images. `exclude`
names are never installed and requirements that only they satisfy are dropped (bazeldnf's
--force-ignore-with-dependencies), which is how shells and package managers stay out.
"""
from __future__ import annotations

import dataclasses
import re
import tempfile

import solv

from supplychain.errors import SupplyChainError


@dataclasses.dataclass(frozen=True)
class Resolved:
    """One resolved package. `evr` is "epoch:version-release" (rpm) or the Debian version;
    `location` is relative to the repository base URL; `sha256`/`size` come from the signed or
    checksummed metadata; `requires` are the names of the resolved packages it depends on."""

    name: str
    evr: str
    arch: str
    repository: str
    location: str
    sha256: str
    size: int
    requires: tuple[str, ...]


_DEB_DEP = re.compile(r"^\s*([A-Za-z0-9.+\-]+)(?::[a-z0-9]+)?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?")
_DEB_OPS = {"<<": solv.REL_LT, "<": solv.REL_LT | solv.REL_EQ, "<=": solv.REL_LT | solv.REL_EQ,
            "=": solv.REL_EQ, ">=": solv.REL_GT | solv.REL_EQ, ">": solv.REL_GT | solv.REL_EQ,
            ">>": solv.REL_GT}


class Solver:
    """A libsolv pool for one architecture; add repositories, then `resolve`."""

    def __init__(self, arch: str):
        self.pool = solv.Pool()
        self.pool.setarch({"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch))
        self.deb_arch = arch
        self._meta: dict[int, dict] = {}  # solvable id -> deb fields libsolv does not keep

    def add_rpm_primary(self, repo_name: str, primary_xml: bytes) -> None:
        """Load an uncompressed primary.xml of repository `repo_name`."""
        repo = self.pool.add_repo(repo_name)
        with tempfile.NamedTemporaryFile(suffix=".xml") as tmp:
            tmp.write(primary_xml)
            tmp.flush()
            fp = solv.xfopen(tmp.name)
            repo.add_rpmmd(fp, None)
            fp.close()

    def add_deb_packages(self, repo_name: str, stanzas: list[dict[str, str]]) -> None:
        """Load parsed Debian `Packages` stanzas (field -> value) of repository `repo_name`."""
        repo = self.pool.add_repo(repo_name)
        for st in stanzas:
            arch = st.get("Architecture", "")
            if arch not in (self.deb_arch, "all"):
                continue
            s = repo.add_solvable()
            s.name, s.evr = st["Package"], st["Version"]
            s.arch = "noarch" if arch == "all" else {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
            s.add_deparray(solv.SOLVABLE_PROVIDES, self.pool.rel2id(self.pool.str2id(s.name),
                                                                    self.pool.str2id(s.evr), solv.REL_EQ))
            for item in _split_deb(st.get("Provides", "")):
                s.add_deparray(solv.SOLVABLE_PROVIDES, self._deb_dep(item))
            for field in ("Pre-Depends", "Depends"):
                for clause in _split_deb(st.get(field, "")):
                    alts = [self._deb_dep(a) for a in clause.split("|")]
                    dep = alts[0]
                    for alt in alts[1:]:
                        dep = self.pool.rel2id(dep, alt, solv.REL_OR)
                    s.add_deparray(solv.SOLVABLE_REQUIRES, dep)
            self._meta[s.id] = {"location": st["Filename"], "sha256": st["SHA256"], "size": int(st["Size"]),
                                "arch": arch}
        repo.internalize()

    def _deb_dep(self, text: str) -> int:
        m = _DEB_DEP.match(text)
        if not m:
            raise SupplyChainError(f"cannot parse Debian dependency {text!r}")
        name = self.pool.str2id(m.group(1))
        if not m.group(2):
            return name
        return self.pool.rel2id(name, self.pool.str2id(m.group(3)), _DEB_OPS[m.group(2)])

    def resolve(self, install: list[str], exclude: list[str]) -> list[Resolved]:
        """Resolve `install` (names or provides) to the full package set, sorted by name.

        Raises SupplyChainError naming an unknown package, or with libsolv's problem text."""
        pool = self.pool
        excluded = set(exclude)
        pool.addfileprovides()
        pool.createwhatprovides()
        for repo in pool.repos:
            for s in repo.solvables:
                if s.name in excluded:
                    continue
                # marker 0: plain and pre-install requires alike (scriptlets never run here)
                reqs = [d for d in s.lookup_deparray(solv.SOLVABLE_REQUIRES, 0)
                        if d.id != solv.SOLVABLE_PREREQMARKER]
                kept = [d for d in reqs if not _only_excluded(pool, d, excluded)]
                if len(kept) != len(reqs):
                    s.unset(solv.SOLVABLE_REQUIRES)
                    for d in kept:
                        s.add_deparray(solv.SOLVABLE_REQUIRES, d)
            repo.internalize()
        pool.addfileprovides()
        pool.createwhatprovides()
        jobs = []
        for name in install:
            sel = pool.select(name, solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_PROVIDES)
            if sel.isempty():
                raise SupplyChainError(f"package {name!r} is not in any repository")
            jobs += sel.jobs(solv.Job.SOLVER_INSTALL)
        for name in sorted(excluded):
            sel = pool.select(name, solv.Selection.SELECTION_NAME)
            if not sel.isempty():
                jobs += sel.jobs(solv.Job.SOLVER_LOCK)
        solver = pool.Solver()
        solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
        problems = solver.solve(jobs)
        if problems:
            raise SupplyChainError("dependency problem: " + "; ".join(str(p) for p in problems))
        chosen = list(solver.transaction().newsolvables())
        chosen_ids = {s.id for s in chosen}
        out = []
        for s in chosen:
            deps = set()
            for d in s.lookup_deparray(solv.SOLVABLE_REQUIRES, 0):
                for p in pool.whatprovides(d):
                    if p.id in chosen_ids and p.id != s.id:
                        deps.add(p.name)
                        break
            if s.id in self._meta:
                meta = self._meta[s.id]
                location, sha256, size, arch = meta["location"], meta["sha256"], meta["size"], meta["arch"]
            else:
                location = s.lookup_location()[0]
                chk = s.lookup_checksum(solv.SOLVABLE_CHECKSUM)
                if chk is None or chk.typestr() != "sha256":
                    raise SupplyChainError(f"package {s.name}: repository metadata has no sha256 checksum")
                sha256, size, arch = chk.hex(), s.lookup_num(solv.SOLVABLE_DOWNLOADSIZE), s.arch
            out.append(Resolved(s.name, s.evr, arch, s.repo.name, location, sha256, size, tuple(sorted(deps))))
        return sorted(out, key=lambda r: (r.name, r.arch))


def _only_excluded(pool: solv.Pool, dep: solv.Dep, excluded: set[str]) -> bool:
    names = {s.name for s in pool.whatprovides(dep)}
    return bool(names) and names <= excluded


def _split_deb(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def read_deb_stanzas(text: str) -> list[dict[str, str]]:
    """Parse a Debian control-format file (Packages, InRelease body) into field dicts
    (deb822; continuation lines are joined with newlines)."""
    stanzas, cur, last = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur, last = {}, None
        elif line[0] in " \t" and last:
            cur[last] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            cur[key], last = value.strip(), key
    if cur:
        stanzas.append(cur)
    return stanzas
