#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, bring up the embedded installation
# (nats-server + virt-api, detached, logs in the state directory), apply the demo VM when
# examples/vm-demo.yaml exists, and show `kubectl get vm,vmi`. Safe to repeat: `virtctl up` is
# idempotent and `kubectl apply` converges.
#   KUBEVIRT_PY_STATE  state directory (default: <repo>/.state)
#   KUBEVIRT_PY_API_PORT  virt-api HTTPS port on first start (default 8443)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

./scripts/install.sh

state="${KUBEVIRT_PY_STATE:-$root/.state}"
up_args=(--state-dir "$state")
if [ -n "${KUBEVIRT_PY_API_PORT:-}" ]; then up_args+=(--api-port "$KUBEVIRT_PY_API_PORT"); fi
.venv/bin/virtctl up "${up_args[@]}"

kubeconfig="$state/kubeconfig"
if ! command -v kubectl >/dev/null 2>&1; then
  echo "main-job: kubectl is not installed; the installation is up, kubeconfig: $kubeconfig" >&2
  exit 0
fi
kubectl=(kubectl --kubeconfig "$kubeconfig")
if [ -f examples/vm-demo.yaml ]; then
  echo
  echo "+ kubectl --kubeconfig $kubeconfig apply -f examples/vm-demo.yaml"
  "${kubectl[@]}" apply -f examples/vm-demo.yaml
fi
echo
echo "+ kubectl --kubeconfig $kubeconfig get vm,vmi"
"${kubectl[@]}" get vm,vmi
