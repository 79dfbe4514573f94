#!/usr/bin/env bash
#
# Print a few security groups (their VPC and whether ec2-creator manages them) and the region's
# default VPC, so a caller can tell before a launch whether the groups fit it.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"

readonly MAX_GROUPS=5

usage() {
  cat <<USAGE
Usage: ${SCRIPT_NAME} [options] [--] SECURITY_GROUP_ID...

Print 1 to ${MAX_GROUPS} security groups, in the order given (a group given twice is printed once):
  {"default_vpc_id": "vpc-…" or null, "groups": [{"id","name","vpc_id","managed"}]}
managed says whether the group is tagged ${MANAGED_TAG_KEY}=${MANAGED_TAG_VALUE}; default_vpc_id is null
when the region has no default VPC.

Options:
  -h, --help     print this help

Exit codes: 0 ok, 1 other, 2 usage, 3 not found (a group; the message names it),
            5 throttled/unavailable, 6 credentials/permission, 7 timed out, 8 missing aws/jq.
USAGE
}

readonly -a VALUE_OPTIONS=()
readonly -a FLAG_OPTIONS=()

take_option() {
  :
}

main() {
  parse_options "$@"
  local -a ids=()
  local id
  ((${#POSITIONAL_ARGUMENTS[@]} >= 1)) || usage_error 'expected at least one SECURITY_GROUP_ID'
  for id in "${POSITIONAL_ARGUMENTS[@]}"; do
    validate_security_group_id "${id}"
    [[ " ${ids[*]} " == *" ${id} "* ]] || ids+=("${id}")
  done
  ((${#ids[@]} <= MAX_GROUPS)) || usage_error "expected at most ${MAX_GROUPS} security group ids, got ${#ids[@]}"
  require_tools

  local default_vpc groups missing
  default_vpc="$(aws_ec2 describe-vpcs --filters="$(json_filter is-default true)" |
    jq -c '.Vpcs[0].VpcId // null')"
  # A filter, unlike --group-ids, answers for the groups that exist, so the message can name
  # exactly the ones that do not.
  groups="$(aws_ec2 describe-security-groups --filters="$(json_filter group-id "${ids[@]}")")"
  missing="$(jq -r '[.SecurityGroups[]?.GroupId] as $found
    | [$ARGS.positional[] | select(. as $id | $found | index($id) | not) | "\u0027\(.)\u0027"]
    | if length == 1 then "the security group ID \(.[0]) does not exist"
      elif length > 1 then "the security group IDs \(join(", ")) do not exist"
      else empty end' --args "${ids[@]}" <<<"${groups}")"
  [[ -z "${missing}" ]] || fail InvalidGroup.NotFound "${EXIT_NOT_FOUND}" "${missing}"
  jq --argjson default_vpc "${default_vpc}" --arg key "${MANAGED_TAG_KEY}" --arg value "${MANAGED_TAG_VALUE}" '
    (.SecurityGroups | map({(.GroupId): .}) | add) as $by_id
    | {
        default_vpc_id: $default_vpc,
        groups: [$ARGS.positional[] | $by_id[.] | {
          id: .GroupId,
          name: .GroupName,
          vpc_id: (.VpcId // null),
          managed: ([(.Tags // [])[] | select(.Key == $key) | .Value][0] == $value)
        }]
      }' --args "${ids[@]}" <<<"${groups}"
}

main "$@"
