#!/usr/bin/env bash
# The main job on a fresh machine (Debian, as root): install what is needed, bring up the
# embedded installation (nats-server, virt-api, virt-controller, scheduler-bridge, virt-handler on
# qemu:///system; libvirtd/virtlogd started when not running), build and import the demo guest,
# apply examples/vm-demo.yaml, wait until the VM is Running, and show `kubectl get vm,vmi` and
# the guest's first console lines. Leaves the installation running. Safe to repeat: a second run
# finds everything in place and changes nothing. Details: docs/main-job.md.
#   KUBEVIRT_PY_STATE     state directory (default: <repo>/.state)
#   KUBEVIRT_PY_API_PORT  virt-api HTTPS port on first start (default 8443)
#   KUBEVIRT_PY_TIMEOUT   seconds to wait for the VM to be Running (default 300)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$(date +%s)

./scripts/install.sh

state="${KUBEVIRT_PY_STATE:-$root/.state}"
up_args=(--state-dir "$state")
if [ -n "${KUBEVIRT_PY_API_PORT:-}" ]; then up_args+=(--api-port "$KUBEVIRT_PY_API_PORT"); fi
echo "+ virtctl up ${up_args[*]}"
.venv/bin/virtctl up "${up_args[@]}"

.venv/bin/python -m services.virtctl.main_job --state-dir "$state" --manifest examples/vm-demo.yaml \
  --timeout "${KUBEVIRT_PY_TIMEOUT:-300}"
echo "main-job: done in $(( $(date +%s) - started )) s"
