#!/usr/bin/env bash
#
# The stages of jenkins/deployment/Jenkinsfile, runnable by hand from any checkout:
#   install    npm ci, skipped when package-lock.json and node are unchanged since the last install;
#              npm's download cache lives outside the workspace (NPM_CACHE_DIR) so it survives cleanups
#   lint       shellcheck over every shell file, npm-groovy-lint over every Jenkinsfile
#   typecheck  tsc --noEmit over app, tests and scripts
#   test       mocha with a JUnit report in test-results/junit.xml (needs moto_server and aws on PATH)
#   build      tsc to dist/
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") install|lint|typecheck|test|build

Environment: NPM_CACHE_DIR (default \${XDG_CACHE_HOME:-\$HOME/.cache}/ec2-creator/npm),
FORCE_NPM_CI=true to reinstall whatever the stamp says.
USAGE
}

cd "$(dirname -- "${BASH_SOURCE[0]}")/../.."

stage_install() {
  local cache="${NPM_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/ec2-creator/npm}"
  local stamp=node_modules/.ec2-creator-install-stamp want
  want="$(cat package-lock.json <(node --version) | sha256sum | cut -d ' ' -f 1)"
  if [[ "${FORCE_NPM_CI:-false}" != true && -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
    echo "dependencies up to date (package-lock.json and node unchanged): npm ci skipped"
    return 0
  fi
  mkdir -p -- "${cache}"
  npm ci --no-audit --no-fund --prefer-offline --cache "${cache}"
  printf '%s\n' "${want}" >"${stamp}"
}

stage_lint() {
  bash scripts/lint_shell.sh
  bash scripts/jenkins/lint_groovy.sh
}

stage_typecheck() { npm run --silent typecheck; }

stage_test() {
  rm -rf test-results
  npm run --silent test:junit
}

stage_build() { npm run --silent build; }

case "${1:-}" in
-h | --help) usage ;;
install | lint | typecheck | test | build) "stage_$1" ;;
*) usage >&2; exit 2 ;;
esac
