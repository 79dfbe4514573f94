#!/usr/bin/env bash
#
# Get or create, by name, a security group that lets SSH in from some CIDRs and HTTP and HTTPS from
# others, and nothing else. A group of that name that ec2-creator made is brought to exactly those
# rules: missing ones are added, every other inbound rule is revoked. Running it again changes nothing.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"

readonly SSH_PORTS=(22)
readonly WEB_PORTS=(80 443)
# EC2's default bound on inbound rules per group (each CIDR on each port is one rule).
readonly MAX_RULES=60

usage() {
  cat <<USAGE
Usage: ${SCRIPT_NAME} [options]

Ensure a security group allowing TCP 22 from the SSH CIDRs and TCP 80 and 443 from the web CIDRs
exists with exactly those inbound rules, and print it:
  {"id","name","vpc_id","created","rules":[{"protocol","port","cidr"}],"revoked"}

Options (each also as --option=value):
  --name NAME       group name (default ec2-creator-ssh-web)
  --ssh-cidr CIDR   allow SSH (port 22) from CIDR (repeatable)
  --web-cidr CIDR   allow HTTP and HTTPS (ports 80, 443) from CIDR (repeatable)
  --cidr CIDR       allow all three ports from CIDR (repeatable; the same as --ssh-cidr CIDR
                    --web-cidr CIDR)
                    A kind of port no CIDR option names stays closed. With no CIDR option at
                    all, all three ports are open to 0.0.0.0/0, the whole internet, with a
                    warning; prefer your own address, e.g. 203.0.113.7/32.
                    CIDR: IPv4 (203.0.113.0/24) or IPv6 (2001:db8::/32), without host bits
                    set; at most ${MAX_RULES} rules in all.
  --vpc-id VPC      the VPC (default: the region's default VPC)
  -h, --help        print this help

A group found by name that is not tagged ${MANAGED_TAG_KEY}=${MANAGED_TAG_VALUE} is left unchanged (exit 4).
Inbound rules of a managed group other than the ones asked for (other ports, CIDRs, protocols,
group references) are revoked; "revoked" counts them.

Exit codes: 0 ok, 1 other, 2 usage, 3 not found (VPC), 4 conflict (a group of that name not
            managed by ec2-creator), 5 throttled/unavailable, 6 credentials/permission,
            7 timed out, 8 missing aws/jq.
USAGE
}

readonly -a VALUE_OPTIONS=(--name --cidr --ssh-cidr --web-cidr --vpc-id)
readonly -a FLAG_OPTIONS=()
readonly TAKES_ARGUMENTS=false

# take_option NAME [VALUE]: sets main's locals (see lib/options.sh).
take_option() {
  case "$1" in
  --name) name="$2" ;;
  --cidr) ssh_cidrs+=("$2"); web_cidrs+=("$2") ;;
  --ssh-cidr) ssh_cidrs+=("$2") ;;
  --web-cidr) web_cidrs+=("$2") ;;
  --vpc-id) vpc_id="$2" ;;
  esac
}

# canonical_list NAME CIDR...: validate each CIDR and set the array NAME to their canonical
# spellings, each once.
canonical_list() {
  local -n list="$1"
  local cidr
  shift
  list=()
  for cidr in "$@"; do
    canonicalize_cidr "${cidr}"
    [[ " ${list[*]} " == *" ${CANONICAL_CIDR} "* ]] || list+=("${CANONICAL_CIDR}")
  done
}

# What the group should hold: [{protocol, port, cidr}], sorted as printed.
# shellcheck disable=SC2016 # jq program: its $names are jq variables
readonly DESIRED_JQ='
  [($ssh[] as $cidr | $ssh_ports[] | {protocol: "tcp", port: ., cidr: $cidr}),
   ($web[] as $cidr | $web_ports[] | {protocol: "tcp", port: ., cidr: $cidr})]
  | unique | sort_by(.port, .cidr)'

# From the group (describe-security-groups) and $desired: every inbound rule it holds, one source
# each, as EC2 counts rules; which of them to revoke (all that are not desired) as ip-permissions,
# and which desired ones to authorize. Descriptions are left out: EC2 matches a rule without them.
# shellcheck disable=SC2016 # jq program: its $names are jq variables
readonly CONVERGE_JQ='
  def ports: (if .FromPort == null then {} else {FromPort, ToPort} end);
  def one_source_each:
    .IpProtocol as $protocol | ports as $ports
    | ((.IpRanges // [])[] | {IpProtocol: $protocol, IpRanges: [{CidrIp}]} + $ports),
      ((.Ipv6Ranges // [])[] | {IpProtocol: $protocol, Ipv6Ranges: [{CidrIpv6}]} + $ports),
      ((.UserIdGroupPairs // [])[]
        | {IpProtocol: $protocol, UserIdGroupPairs: [{GroupId} + (if .UserId then {UserId} else {} end)]} + $ports),
      ((.PrefixListIds // [])[] | {IpProtocol: $protocol, PrefixListIds: [{PrefixListId}]} + $ports);
  def as_desired:
    if .IpProtocol == "tcp" and .FromPort == .ToPort and ((.IpRanges // .Ipv6Ranges) != null)
    then {protocol: "tcp", port: .FromPort, cidr: ((.IpRanges[0].CidrIp // .Ipv6Ranges[0].CidrIpv6) | ascii_downcase)}
    else null end;
  def permission:
    {IpProtocol: "tcp", FromPort: .port, ToPort: .port}
    + if (.cidr | contains(":")) then {Ipv6Ranges: [{CidrIpv6: .cidr}]} else {IpRanges: [{CidrIp: .cidr}]} end;
  [(.IpPermissions // [])[] | one_source_each] as $held
  | {
      revoke: [$held[] | select(as_desired as $rule | $rule == null or ($desired | index([$rule]) | not))],
      authorize: [$desired[] | select(. as $rule | [$held[] | as_desired] | index([$rule]) | not) | permission]
    }'

main() {
  local name=ec2-creator-ssh-web vpc_id=''
  local -a ssh_cidrs=() web_cidrs=()
  parse_options "$@"
  validate_group_name "${name}"
  if ((${#ssh_cidrs[@]} == 0 && ${#web_cidrs[@]} == 0)); then
    ssh_cidrs=(0.0.0.0/0)
    web_cidrs=(0.0.0.0/0)
    err "warning: no --cidr given; ports ${SSH_PORTS[*]} ${WEB_PORTS[*]} will be open to the whole internet (0.0.0.0/0)"
  else
    local cidr
    for cidr in "${ssh_cidrs[@]}" "${web_cidrs[@]}"; do
      [[ "${cidr}" != */0 ]] || err "warning: ${cidr} is the whole internet"
    done
  fi
  local -a ssh=() web=()
  canonical_list ssh "${ssh_cidrs[@]}"
  canonical_list web "${web_cidrs[@]}"
  [[ -z "${vpc_id}" ]] || validate_vpc_id "${vpc_id}"
  require_tools

  local desired
  desired="$(jq -cn --argjson ssh_ports "$(jq -cn '$ARGS.positional | map(tonumber)' --args "${SSH_PORTS[@]}")" \
    --argjson web_ports "$(jq -cn '$ARGS.positional | map(tonumber)' --args "${WEB_PORTS[@]}")" \
    --argjson ssh "$(jq -cn '$ARGS.positional' --args "${ssh[@]}")" \
    --argjson web "$(jq -cn '$ARGS.positional' --args "${web[@]}")" "${DESIRED_JQ}")"
  local rule_count
  rule_count="$(jq length <<<"${desired}")"
  ((rule_count <= MAX_RULES)) ||
    usage_error "${rule_count} rules asked for (each CIDR on each of its ports is one); a group holds at most ${MAX_RULES}"

  if [[ -z "${vpc_id}" ]]; then
    vpc_id="$(aws_ec2 describe-vpcs --filters="$(json_filter is-default true)" |
      jq -r '.Vpcs[0].VpcId // empty')"
    [[ -n "${vpc_id}" ]] ||
      fail DefaultVpcNotFound "${EXIT_NOT_FOUND}" 'this region has no default VPC; pass --vpc-id'
  else
    # Asked first: not every endpoint refuses a group in a VPC that does not exist.
    aws_ec2 describe-vpcs --vpc-ids="${vpc_id}" >/dev/null
  fi

  local filters groups group group_id created=false
  filters="$(jq -cn --arg name "${name}" --arg vpc "${vpc_id}" \
    '[{Name: "group-name", Values: [$name]}, {Name: "vpc-id", Values: [$vpc]}]')"
  groups="$(aws_ec2 describe-security-groups --filters="${filters}")"
  group="$(jq -c '.SecurityGroups[0] // empty' <<<"${groups}")"
  if [[ -n "${group}" ]]; then
    group_id="$(jq -r '.GroupId' <<<"${group}")"
    # Converging revokes rules: only ever on a group ec2-creator made, never on someone's own group
    # that happens to have the name.
    if [[ "$(jq -r --arg key "${MANAGED_TAG_KEY}" '[(.Tags // [])[] | select(.Key == $key) | .Value][0] // ""' \
      <<<"${group}")" != "${MANAGED_TAG_VALUE}" ]]; then
      fail NotManaged "${EXIT_CONFLICT}" \
        "security group ${name} (${group_id}) in ${vpc_id} is not tagged ${MANAGED_TAG_KEY}=${MANAGED_TAG_VALUE}; it was left unchanged: choose another --name"
    fi
  else
    err "creating security group ${name} in ${vpc_id}"
    local tags
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

  # Only what differs is sent, so a second run makes no call that could fail as a duplicate.
  local plan revoke authorize revoked
  plan="$(jq -c --argjson desired "${desired}" "${CONVERGE_JQ}" <<<"${group}")"
  revoke="$(jq -c '.revoke' <<<"${plan}")"
  authorize="$(jq -c '.authorize' <<<"${plan}")"
  revoked="$(jq length <<<"${revoke}")"
  # Revoked first: should the second call fail, the group is left narrower, not wider.
  if ((revoked > 0)); then
    err "revoking ${revoked} inbound rule(s) not asked for from ${group_id}"
    aws_ec2 revoke-security-group-ingress --group-id="${group_id}" --ip-permissions="${revoke}" >/dev/null
  fi
  if [[ "${authorize}" != '[]' ]]; then
    err "allowing $(jq -r '[.[] | "tcp \(.FromPort) from \((.IpRanges // .Ipv6Ranges)[0] | .CidrIp // .CidrIpv6)"] | join(", ")' \
      <<<"${authorize}") in ${group_id}"
    aws_ec2 authorize-security-group-ingress --group-id="${group_id}" --ip-permissions="${authorize}" >/dev/null
  fi

  # EC2 accepted both calls: the group now holds exactly the desired rules.
  jq --argjson created "${created}" --argjson rules "${desired}" --argjson revoked "${revoked}" '{
      id: .GroupId,
      name: .GroupName,
      vpc_id: .VpcId,
      created: $created,
      rules: $rules,
      revoked: $revoked
    }' <<<"${group}"
}

main "$@"
