#!/usr/bin/env bash
#
# Run a command on a given Node, taken from the npm registry's node-linux-<arch> package: the registry is
# the only place these machines reach, and its `node` package lags behind and fetches the binary again
# from nodejs.org in an install script. Run it, or source it for its functions (.ci/run does, to run
# all of its own steps on one Node).
#
# Each Node is unpacked once into the tools folder and reused. While COMMAND runs, that Node's bin comes
# first on PATH (npm and npx are scripts that run on the first node there), npm builds any addon against
# its headers, and a module preloaded into every node process (node-version-guard.mjs) stops a process
# that runs on another Node and notes the version of every one, so a step cannot pass on the wrong
# version unnoticed.
set -euo pipefail

ON_NODE_ROOT="$(cd "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)"
ON_NODE_TOOLS_DIR="${EC2_CREATOR_TOOLS_DIR:-${ON_NODE_ROOT}/.tools}"

on_node_usage() {
  cat <<USAGE
Usage: $(basename -- "$0") VERSION [COMMAND [ARG...]]

Run COMMAND on Node VERSION from the npm registry's node-linux-<arch> package: a major (24, the newest
24.x) or an exact version (24.21.0). Without a COMMAND, unpack that Node and print its version and path.
Environment:
  EC2_CREATOR_TOOLS_DIR  where each Node is unpacked and reused (default: .tools in the checkout)
Exit codes: COMMAND's own status; 70 when COMMAND passed but a node process ran on another Node;
2 when that Node could not be had.
USAGE
}

on_node_die() {
  echo "on-node: $*" >&2
  exit 2
}

# on_node_install SPEC: unpack the newest node-linux-<arch> matching SPEC (unless it is there already) and
# set NODE_VERSION (v24.22.3) and NODE_DIR (the folder holding bin/node and include/node).
on_node_install() {
  local spec="$1" arch package version partial tarball
  case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) on_node_die "no Node build on the npm registry for $(uname -m)" ;;
  esac
  package="node-linux-${arch}"
  version="$(npm view --loglevel=error "${package}@${spec}" version --json |
    jq -r 'if type == "array" then .[] else . end' | sort -V | tail -n 1)" ||
    on_node_die "npm view ${package}@${spec} failed"
  [[ "${version}" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || on_node_die "the registry has no ${package}@${spec}"
  NODE_VERSION="v${version}"
  NODE_DIR="${ON_NODE_TOOLS_DIR}/node-${NODE_VERSION}-linux-${arch}"
  if [[ ! -x "${NODE_DIR}/bin/node" ]]; then
    mkdir -p -- "${ON_NODE_TOOLS_DIR}"
    # Unpacked beside its final place and moved there whole: an interrupted run leaves no half a Node
    # that a later one would take for a complete one.
    partial="$(mktemp -d "${NODE_DIR}.partial-XXXXXX")"
    tarball="$(cd "${partial}" && npm pack --silent --loglevel=error "${package}@${version}")" ||
      { rm -rf -- "${partial}"; on_node_die "npm pack ${package}@${version} failed"; }
    mkdir "${partial}/node"
    tar -xzf "${partial}/${tarball}" -C "${partial}/node" --strip-components=1
    rm -rf -- "${NODE_DIR}"
    mv -- "${partial}/node" "${NODE_DIR}"
    rm -rf -- "${partial}"
  fi
  [[ -x "${NODE_DIR}/bin/node" && -f "${NODE_DIR}/include/node/node.h" ]] ||
    on_node_die "${package}@${version} has no bin/node or include/node"
  [[ "$("${NODE_DIR}/bin/node" --version)" == "${NODE_VERSION}" ]] ||
    on_node_die "${NODE_DIR}/bin/node is not ${NODE_VERSION}"
}

# on_node_enter: from here on, this shell and what it starts run on the Node on_node_install set up.
# Sets NODE_PROCESS_LOG, the file the guard notes every node process in.
on_node_enter() {
  local guard="${ON_NODE_ROOT}/scripts/ci/node-version-guard.mjs" configured
  configured="$(npm config get nodedir 2>/dev/null || true)"
  export PATH="${NODE_DIR}/bin:${PATH}"
  # The machine's npm configuration may name another Node's headers (these machines set /usr, Node 20's):
  # an addon built against them would not load here, or would build against the wrong ABI.
  if [[ -n "${configured}" && "${configured}" != undefined && "${configured}" != "${NODE_DIR}" ]]; then
    export npm_config_nodedir="${NODE_DIR}"
  fi
  NODE_PROCESS_LOG="$(mktemp "${TMPDIR:-/tmp}/ec2-creator-node-processes-XXXXXX")"
  export EC2_CREATOR_EXPECT_NODE_VERSION="${NODE_VERSION}"
  export EC2_CREATOR_NODE_VERSION_LOG="${NODE_PROCESS_LOG}"
  # Once is enough when an outer run already preloads it: the guard reads the variables above afresh.
  if [[ "${NODE_OPTIONS:-}" != *"${guard}"* ]]; then
    export NODE_OPTIONS="--import=\"${guard}\"${NODE_OPTIONS:+ ${NODE_OPTIONS}}"
  fi
}

# on_node_report LABEL: one line on the node processes since on_node_enter, and each one on another Node;
# removes the log. Returns 1 when any ran on another Node.
on_node_report() {
  local label="$1" processes wrong versions
  processes="$(wc -l <"${NODE_PROCESS_LOG}")"
  wrong="$(grep -c '^WRONG' "${NODE_PROCESS_LOG}" || true)"
  versions="$(awk '{ print $2 }' "${NODE_PROCESS_LOG}" | sort -u | paste -sd, -)"
  grep '^WRONG' "${NODE_PROCESS_LOG}" >&2 || true
  echo "on-node: ${label}: ${processes} node processes ran, on ${versions:-no Node}; ${wrong} on another version"
  rm -f -- "${NODE_PROCESS_LOG}"
  ((wrong == 0))
}

on_node_main() {
  case "${1:-}" in
  -h | --help) on_node_usage; exit 0 ;;
  '') on_node_usage >&2; exit 2 ;;
  esac
  local spec="$1" status=0
  shift
  on_node_install "${spec}"
  if (($# == 0)); then
    echo "${NODE_VERSION} ${NODE_DIR}"
    return 0
  fi
  on_node_enter
  "$@" || status=$?
  on_node_report "${NODE_VERSION} $*" || ((status != 0)) || status=70
  return "${status}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  on_node_main "$@"
fi
