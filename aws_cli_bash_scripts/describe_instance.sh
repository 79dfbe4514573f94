#!/usr/bin/env bash
#
# Print one instance as EC2 sees it now.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
Usage: ${SCRIPT_NAME} [options] INSTANCE_ID

Print the instance as JSON (see README.md, "Instance document").

Options:
  --no-storage   leave storage_gb null instead of reading the root volume (one AWS call fewer)
  -h, --help     print this help

Exit codes: 0 ok, 1 other, 2 usage, 3 not found, 5 throttled/unavailable,
            6 credentials/permission, 7 timed out, 8 missing aws/jq.
USAGE
}

readonly -a VALUE_OPTIONS=()
readonly -a FLAG_OPTIONS=(--no-storage)

take_option() {
  case "$1" in
  --no-storage) READ_STORAGE=false ;;
  esac
}

main() {
  parse_options "$@"
  one_positional INSTANCE_ID "${POSITIONAL_ARGUMENTS[@]}"
  validate_instance_id "${ARGUMENT}"
  require_tools
  describe_instance_document "${ARGUMENT}"
}

main "$@"
