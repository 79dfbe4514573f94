#!/usr/bin/env bash
#
# List instances as one JSON document, every page of them.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
Usage: ${SCRIPT_NAME} [options]

Print {"instances": [...]} (see README.md, "Instance document"): by default the instances tagged
ManagedBy=ec2-creator, in every state.

Options (each also as --option=value):
  --all            every instance in the region, managed or not
  --state STATE    only instances in STATE (repeatable): pending running stopping stopped
                   shutting-down terminated
  --page-size N    ask EC2 for N instances per call (5 to 1000); every page is read anyway
  --no-storage     leave storage_gb null instead of reading root volumes (one AWS call fewer)
  -h, --help       print this help

Exit codes: 0 ok, 1 other, 2 usage, 5 throttled/unavailable, 6 credentials/permission,
            7 timed out, 8 missing aws/jq.
USAGE
}

readonly -a VALUE_OPTIONS=(--state --page-size)
readonly -a FLAG_OPTIONS=(--all --no-storage)
readonly TAKES_ARGUMENTS=false

# take_option NAME [VALUE]: sets main's locals (see lib/options.sh).
take_option() {
  case "$1" in
  --all) all=true ;;
  --no-storage) READ_STORAGE=false ;;
  --state) validate_state "$2"; states+=("$2") ;;
  --page-size) page_size="$2" ;;
  esac
}

main() {
  local all=false page_size=''
  local -a states=()
  parse_options "$@"
  [[ -z "${page_size}" ]] || validate_integer --page-size "${page_size}" 5 1000
  require_tools

  local filters
  filters="$(jq -cn --arg key "tag:${MANAGED_TAG_KEY}" --arg value "${MANAGED_TAG_VALUE}" \
    --argjson all "${all}" '
    ($ARGS.positional | if length > 0 then [{Name: "instance-state-name", Values: .}] else [] end)
    + (if $all then [] else [{Name: $key, Values: [$value]}] end)' --args "${states[@]}")"
  local -a call=()
  [[ "${filters}" == '[]' ]] || call+=(--filters="${filters}")
  [[ -z "${page_size}" ]] || call+=(--page-size="${page_size}")
  # The CLI follows NextToken itself unless told --no-paginate, so this is every page.
  aws_ec2 describe-instances "${call[@]}" | instances_from_reservations |
    jq '{instances: (. | sort_by(.launch_time) | reverse)}'
}

main "$@"
