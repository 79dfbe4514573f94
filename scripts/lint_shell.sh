#!/usr/bin/env bash
#
# Run shellcheck over every shell file in the repository (scripts, libraries, test fixtures and
# .ci/run). Exit 0 when clean, shellcheck's status otherwise.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename -- "$0")

Run shellcheck over every shell file tracked in the repository.
Exit codes: 0 clean, 1 findings, 2 shellcheck missing.
USAGE
}

case "${1:-}" in
-h | --help) usage; exit 0 ;;
esac
command -v shellcheck >/dev/null 2>&1 || { echo 'shellcheck is not installed (apt-get install shellcheck)' >&2; exit 2; }
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

files=()
while IFS= read -r -d '' file; do
  files+=("${file}")
done < <(find aws_cli_bash_scripts scripts test/fixtures .ci -type f \
  \( -name '*.sh' -o -path '*fake-aws/*' -o -path '.ci/run' \) -print0 | sort -z)
shellcheck "${files[@]}"
echo "shellcheck: ${#files[@]} files clean"
