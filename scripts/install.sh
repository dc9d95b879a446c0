#!/usr/bin/env bash
# Install everything kubevirt-py needs on a fresh Debian machine (run as root):
# the Debian packages in scripts/apt-packages.txt, a virtualenv in .venv with
# the project and its test extras, and .venv-tools with the tools whose dependencies
# clash with the project's (scripts/tools-requirements.txt). Idempotent: a second run only checks.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

mapfile -t wanted < <(grep -v '^\s*#' scripts/apt-packages.txt | grep -v '^\s*$')
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "install: python environment in .venv"
  [ -x .venv/bin/python ] || python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[test,supplychain,cli,csi,installation]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# the project's build backend inside .venv, so `pip wheel --no-build-isolation` builds the
# images' wheel offline and reproducibly: exactly the version pyproject's [build-system] pins (another
# hatchling writes another WHEEL Generator line, so another wheel and another image digest)
hatchling_pin=$(.venv/bin/python -c 'import tomllib; print(next(r for r in tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"] if r.startswith("hatchling==")))')
[ "$(.venv/bin/python -c 'import importlib.metadata as m; print("hatchling==" + m.version("hatchling"))' 2>/dev/null)" = "$hatchling_pin" ] \
  || .venv/bin/pip install -q "$hatchling_pin"

# tools in their own environment (their pins clash with the project's): checkov for the manifests' policy scan
tools_stamp=.venv-tools/.installed-$(sha256sum < scripts/tools-requirements.txt | cut -c1-16)
if [ ! -f "$tools_stamp" ]; then
  echo "install: tools environment in .venv-tools"
  [ -x .venv-tools/bin/python ] || python3.11 -m venv .venv-tools 2>/dev/null || python3 -m venv .venv-tools
  .venv-tools/bin/pip install -q --upgrade pip
  .venv-tools/bin/pip install -q -r scripts/tools-requirements.txt
  rm -f .venv-tools/.installed-*
  touch "$tools_stamp"
fi
