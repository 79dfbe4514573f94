#!/usr/bin/env bash
#
# Get or create, by name, a security group that lets SSH, HTTP and HTTPS in from one CIDR.
# Running it again changes nothing; a group missing some of the rules gets them added.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"

readonly PORTS=(22 80 443)

usage() {
  cat <<USAGE
Usage: ${SCRIPT_NAME} [options]

Ensure a security group allowing TCP 22, 80 and 443 from CIDR exists, and print it:
  {"id","name","vpc_id","created","rules":[{"protocol","port","cidr"}]}

Options (each also as --option=value):
  --name NAME      group name (default ec2-creator-ssh-web)
  --cidr CIDR      source of the allowed traffic (default 0.0.0.0/0, the whole internet:
                   a warning is printed; prefer your own address, e.g. 203.0.113.7/32)
  --vpc-id VPC     the VPC (default: the region's default VPC)
  -h, --help       print this help

Exit codes: 0 ok, 1 other, 2 usage, 3 not found (VPC), 4 conflict, 5 throttled/unavailable,
            6 credentials/permission, 7 timed out, 8 missing aws/jq.
USAGE
}

readonly -a VALUE_OPTIONS=(--name --cidr --vpc-id)
readonly -a FLAG_OPTIONS=()
readonly TAKES_ARGUMENTS=false

# take_option NAME [VALUE]: sets main's locals (see lib/options.sh).
take_option() {
  case "$1" in
  --name) name="$2" ;;
  --cidr) cidr="$2" ;;
  --vpc-id) vpc_id="$2" ;;
  esac
}

main() {
  local name=ec2-creator-ssh-web cidr='' vpc_id=''
  parse_options "$@"
  validate_group_name "${name}"
  if [[ -z "${cidr}" ]]; then
    cidr=0.0.0.0/0
    err "warning: no --cidr given; ports ${PORTS[*]} will be open to the whole internet (0.0.0.0/0)"
  fi
  validate_cidr "${cidr}"
  [[ -z "${vpc_id}" ]] || validate_vpc_id "${vpc_id}"
  require_tools

  if [[ -z "${vpc_id}" ]]; then
    vpc_id="$(aws_ec2 describe-vpcs --filters="$(json_filter is-default true)" |
      jq -r '.Vpcs[0].VpcId // empty')"
    [[ -n "${vpc_id}" ]] ||
      fail DefaultVpcNotFound "${EXIT_NOT_FOUND}" 'this region has no default VPC; pass --vpc-id'
  else
    # Asked first: not every endpoint refuses a group in a VPC that does not exist.
    aws_ec2 describe-vpcs --vpc-ids="${vpc_id}" >/dev/null
  fi

  local filters groups group created=false
  filters="$(jq -cn --arg name "${name}" --arg vpc "${vpc_id}" \
    '[{Name: "group-name", Values: [$name]}, {Name: "vpc-id", Values: [$vpc]}]')"
  groups="$(aws_ec2 describe-security-groups --filters="${filters}")"
  group="$(jq -c '.SecurityGroups[0] // empty' <<<"${groups}")"
  if [[ -z "${group}" ]]; then
    err "creating security group ${name} in ${vpc_id}"
    local tags group_id
    tags="$(jq -cn --arg name "${name}" --arg key "${MANAGED_TAG_KEY}" --arg value "${MANAGED_TAG_VALUE}" \
      '[{ResourceType: "security-group", Tags: [{Key: "Name", Value: $name}, {Key: $key, Value: $value}]}]')"
    group_id="$(aws_ec2 create-security-group --group-name="${name}" --vpc-id="${vpc_id}" \
      --description='SSH, HTTP and HTTPS, managed by ec2-creator' --tag-specifications="${tags}" |
      jq -r '.GroupId // empty')"
    [[ -n "${group_id}" ]] ||
      fail InvalidAwsOutput "${EXIT_OTHER}" 'create-security-group answered without a group id'
    created=true
    # A new group allows no inbound traffic: nothing to read back.
    group="$(jq -cn --arg id "${group_id}" --arg name "${name}" --arg vpc "${vpc_id}" \
      '{GroupId: $id, GroupName: $name, VpcId: $vpc, IpPermissions: []}')"
  fi

  # Only the missing rules are added, so a second run makes no call that could fail as a duplicate.
  local missing
  missing="$(jq -c --arg cidr "${cidr}" '
    [.IpPermissions[]?
      | select(.IpProtocol == "tcp" and .FromPort == .ToPort and any(.IpRanges[]?; .CidrIp == $cidr))
      | .FromPort] as $present
    | [$ARGS.positional[] | tonumber | select(. as $port | $present | index($port) | not)
       | {IpProtocol: "tcp", FromPort: ., ToPort: ., IpRanges: [{CidrIp: $cidr}]}]' \
    --args "${PORTS[@]}" <<<"${group}")"
  if [[ "${missing}" != '[]' ]]; then
    local group_id
    group_id="$(jq -r '.GroupId' <<<"${group}")"
    err "allowing tcp $(jq -r '[.[].FromPort] | join(", ")' <<<"${missing}") from ${cidr} in ${group_id}"
    aws_ec2 authorize-security-group-ingress --group-id="${group_id}" --ip-permissions="${missing}" >/dev/null
    # EC2 accepted exactly these rules; the group now holds them beside the ones it had.
    group="$(jq -c --argjson added "${missing}" '.IpPermissions = ((.IpPermissions // []) + $added)' <<<"${group}")"
  fi

  jq --argjson created "${created}" '{
      id: .GroupId,
      name: .GroupName,
      vpc_id: .VpcId,
      created: $created,
      rules: [.IpPermissions[]? | select(.IpProtocol == "tcp") | .FromPort as $port
              | .IpRanges[]? | {protocol: "tcp", port: $port, cidr: .CidrIp}] | sort_by(.port, .cidr)
    }' <<<"${group}"
}

main "$@"
