#!/usr/bin/env bash
#
# Lint every Jenkinsfile, and the Groovy they load, under jenkins/ with npm-groovy-lint (CodeNarc, rules in jenkins/.groovylintrc.json).
# Runs CodeNarc directly on the machine's Java (17 to 24), never through a background server, and never
# lets npm-groovy-lint download a Java of its own. Exit codes: 0 clean, 1 findings, 5 java or the
# linter missing.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [FILE...]

Lint the Jenkinsfiles (default: every jenkins/**/Jenkinsfile* and jenkins/**/*.groovy) with npm-groovy-lint; any finding (info,
warning or error) fails. JAVA_HOME, when set, chooses the Java; otherwise java from PATH.
Exit codes: 0 clean, 1 findings, 5 java (17 to 24) or npm-groovy-lint missing.
USAGE
}

case "${1:-}" in
-h | --help) usage; exit 0 ;;
esac
cd "$(dirname -- "${BASH_SOURCE[0]}")/../.."

linter=node_modules/.bin/npm-groovy-lint
[[ -x "${linter}" ]] || { echo 'npm-groovy-lint is not installed: run npm ci' >&2; exit 5; }

java_bin="${JAVA_HOME:+${JAVA_HOME}/bin/java}"
java_bin="${java_bin:-$(command -v java || true)}"
[[ -n "${java_bin}" && -x "${java_bin}" ]] || { echo 'java is not installed (Debian: apt-get install openjdk-17-jre-headless)' >&2; exit 5; }
java_major="$("${java_bin}" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)"
if [[ ! "${java_major}" =~ ^[0-9]+$ ]] || ((java_major < 17 || java_major > 24)); then
  echo "npm-groovy-lint needs Java 17 to 24; ${java_bin} is ${java_major:-of unknown version}" >&2
  exit 5
fi

files=()
if (($# > 0)); then
  files=("$@")
else
  while IFS= read -r -d '' file; do
    files+=("${file}")
  done < <(find jenkins -type f \( -name 'Jenkinsfile*' -o -name '*.groovy' \) -print0 | sort -z)
fi
((${#files[@]} > 0)) || { echo 'no Jenkinsfile found under jenkins/' >&2; exit 1; }

# --javaexecutable: a given path stops java-caller from looking for (or downloading) another Java.
# --noserver: no CodeNarc server left listening after the run.
"${linter}" --noserver --javaexecutable "${java_bin}" --config jenkins/.groovylintrc.json \
  --failon info --output txt "${files[@]}"
echo "npm-groovy-lint: ${#files[@]} files clean"
