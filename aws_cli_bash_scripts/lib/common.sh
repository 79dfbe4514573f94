# shellcheck shell=bash
# The constants and ARGUMENT are read by the scripts that source this file.
# shellcheck disable=SC2034
#
# What every EC2 script shares: strict mode, the output contract (one JSON document on stdout,
# diagnostics on stderr), exit codes, argument validation and AWS error classification.
# Sourced, never run. See ../README.md for the contract this file implements.

set -euo pipefail
# Without this, set -e is off inside $(...), and a failed call there would be carried on from.
shopt -s inherit_errexit
# Tag values may hold Unicode letters; a fixed locale makes [[:alnum:]] mean the same everywhere.
export LC_ALL=C.UTF-8

readonly EXIT_OK=0
readonly EXIT_OTHER=1
readonly EXIT_USAGE=2
readonly EXIT_NOT_FOUND=3
readonly EXIT_CONFLICT=4
readonly EXIT_THROTTLED=5
readonly EXIT_AUTH=6
readonly EXIT_TIMEOUT=7
readonly EXIT_MISSING_DEPENDENCY=8
# Only a run given several ids: some failed, the others succeeded (see lib/batch.sh).
readonly EXIT_SOME_FAILED=9
# The instance's state does not allow the call (EC2's IncorrectInstanceState: stopping a pending instance,
# starting a stopping one, starting a terminated one), or it turned to a state the wait did not allow.
readonly EXIT_INCORRECT_STATE=10

readonly MANAGED_TAG_KEY='ManagedBy'
readonly MANAGED_TAG_VALUE='ec2-creator'
readonly CLIENT_TOKEN_TAG_KEY='ec2-creator:client-token'
readonly OWNER_TAG_KEY='Owner'
readonly EXPIRES_AT_TAG_KEY='ec2-creator:expires-at'

SCRIPT_NAME="$(basename -- "$0")"
readonly SCRIPT_NAME

# The result goes to the stdout the script was started with, even from inside $(...), so that an
# error raised in a command substitution still reaches the caller as the one JSON document.
exec 3>&1

# The CLI retries throttling and transient faults itself in "standard" mode; bound it unless the
# caller chose. Each aws call is also bounded in time so that a hung endpoint cannot hang us.
export AWS_RETRY_MODE="${AWS_RETRY_MODE:-standard}"
export AWS_MAX_ATTEMPTS="${AWS_MAX_ATTEMPTS:-5}"
export AWS_PAGER=''
AWS_CALL_TIMEOUT_S="${AWS_CALL_TIMEOUT_S:-120}"

err() {
  printf '%s: %s\n' "${SCRIPT_NAME}" "$*" >&2
}

# Set once EC2 has launched an instance for this run: every error document from then on names it, so a
# caller never takes a failure after the launch (a wait cut short, a lost read) for "nothing launched".
LAUNCHED_INSTANCE_ID=''

# fail CODE EXIT_STATUS MESSAGE...: report on stderr, print the error document, stop.
fail() {
  local code="$1" status="$2"
  shift 2
  err "$*"
  if ! command -v jq >/dev/null 2>&1; then
    # Without jq no JSON can be built safely; this fixed document is the one exception.
    printf '%s\n' '{"error":{"code":"MissingDependency","message":"jq is not installed"}}' >&3
    exit "${EXIT_MISSING_DEPENDENCY}"
  fi
  jq -n --arg code "${code}" --arg message "$*" --arg launched "${LAUNCHED_INSTANCE_ID}" \
    '{error: ({code: $code, message: $message} + if $launched == "" then {} else {instance_id: $launched} end)}' >&3
  exit "${status}"
}

usage_error() {
  fail InvalidArgument "${EXIT_USAGE}" "$* (see ${SCRIPT_NAME} --help)"
}

require_tools() {
  if ! command -v jq >/dev/null 2>&1; then
    fail MissingDependency "${EXIT_MISSING_DEPENDENCY}" \
      'jq is not installed; install it (Debian: apt-get install jq) and try again'
  fi
  if ! command -v aws >/dev/null 2>&1; then
    fail MissingDependency "${EXIT_MISSING_DEPENDENCY}" \
      'the aws CLI is not on PATH; install the AWS CLI and try again'
  fi
}

# --- argument parsing helpers -------------------------------------------------------------------

# shellcheck source=lib/options.sh source-path=SCRIPTDIR/..
source "$(dirname -- "${BASH_SOURCE[0]}")/options.sh"

# one_positional WHAT ARG...: exactly one positional argument, or a usage error. Sets ARGUMENT.
one_positional() {
  local what="$1"
  shift
  (($# == 1)) || usage_error "expected exactly one ${what}, got $#"
  ARGUMENT="$1"
}

# Every script that can wait for a state takes the same two options.
WAIT_TIMEOUT_S=600
POLL_INTERVAL_S=5

validate_wait_options() {
  validate_integer --wait-timeout "${WAIT_TIMEOUT_S}" 1 86400
  validate_integer --poll-interval "${POLL_INTERVAL_S}" 1 3600
}

# --- validation: every value is checked before any AWS call ---------------------------------------

readonly RESOURCE_SUFFIX='[0-9a-f]{8}([0-9a-f]{9})?'

validate_instance_id() {
  [[ "$1" =~ ^i-${RESOURCE_SUFFIX}$ ]] ||
    usage_error "invalid instance id '$1': expected i- followed by 8 or 17 hex digits"
}

validate_ami_id() {
  [[ "$1" =~ ^ami-${RESOURCE_SUFFIX}$ ]] ||
    usage_error "invalid AMI id '$1': expected ami- followed by 8 or 17 hex digits"
}

validate_security_group_id() {
  [[ "$1" =~ ^sg-${RESOURCE_SUFFIX}$ ]] ||
    usage_error "invalid security group id '$1': expected sg- followed by 8 or 17 hex digits"
}

validate_vpc_id() {
  [[ "$1" =~ ^vpc-${RESOURCE_SUFFIX}$ ]] ||
    usage_error "invalid VPC id '$1': expected vpc- followed by 8 or 17 hex digits"
}

# EC2 tag values: letters, digits, spaces and _ . : / = + - @, at most 255 characters.
validate_name() {
  local name="$1"
  if [[ -z "${name}" || "${name}" =~ ^[[:space:]]+$ ]]; then
    usage_error 'the name must not be empty'
  fi
  if ((${#name} > 255)); then
    usage_error "the name is ${#name} characters long; at most 255 are allowed"
  fi
  [[ "${name}" =~ ^[[:alnum:]\ _.:/=+@-]+$ ]] ||
    usage_error 'the name may hold only letters, digits, spaces and _ . : / = + - @'
}

# A device name as EC2 reports an image's root device: /dev/xvda, /dev/sda1, /dev/nvme0n1.
validate_device_name() {
  [[ "$1" =~ ^/dev/[a-z][a-z0-9]{1,31}$ ]] ||
    usage_error "invalid device name '$1': expected /dev/ and a name such as xvda or sda1"
}

validate_instance_type() {
  [[ "$1" =~ ^[a-z][a-z0-9-]*\.[a-z0-9]+$ && ${#1} -le 32 ]] ||
    usage_error "invalid instance type '$1': expected a family and a size such as t3.micro"
}

# Key pair and group names exclude ':' and '/', so a value can never read as a URL that the
# CLI (v1 follows file:// and http:// in parameter values) would load.
validate_key_name() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9\ ._@+=-]{0,254}$ ]] ||
    usage_error "invalid key pair name '$1': letters, digits, spaces and . _ @ + = - only, at most 255"
}

validate_group_name() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9\ ._@+=#()-]{0,254}$ && "$1" != sg-* ]] ||
    usage_error "invalid security group name '$1': letters, digits, spaces and . _ @ + = # ( ) - only, at most 255, not starting with sg-"
}

validate_client_token() {
  [[ "$1" =~ ^[A-Za-z0-9._:-]{1,64}$ ]] ||
    usage_error "invalid client token '$1': 1 to 64 characters from A-Z a-z 0-9 . _ : -"
}

# validate_integer WHAT VALUE MIN MAX
validate_integer() {
  local what="$1" value="$2" min="$3" max="$4"
  [[ "${value}" =~ ^[0-9]{1,9}$ ]] || usage_error "${what} must be a whole number, got '${value}'"
  value=$((10#${value}))
  ((value >= min && value <= max)) || usage_error "${what} must be from ${min} to ${max}, got ${value}"
}

# canonicalize_cidr CIDR: check an IPv4 (a.b.c.d/0-32) or IPv6 (/0-128) block and set CANONICAL_CIDR
# to the one spelling EC2 reports it in (IPv6 lower case, zeros compressed as RFC 5952 says), so
# that a rule asked for compares equal to the rule the group holds. A block with host bits set is
# refused rather than silently widened or narrowed: it would mean a different set of addresses.
canonicalize_cidr() {
  local cidr="$1"
  if [[ "${cidr}" == *:* ]]; then
    canonicalize_ipv6_cidr "${cidr}"
  else
    canonicalize_ipv4_cidr "${cidr}"
  fi
}

canonicalize_ipv4_cidr() {
  local cidr="$1" octet address=0 prefix host_mask
  [[ "${cidr}" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] ||
    usage_error "invalid CIDR '${cidr}': expected an IPv4 block such as 203.0.113.0/24 or an IPv6 block such as 2001:db8::/32"
  prefix=$((10#${BASH_REMATCH[5]}))
  local -a octets=("${BASH_REMATCH[@]:1:4}")
  for octet in "${octets[@]}"; do
    ((10#${octet} <= 255)) || usage_error "invalid CIDR '${cidr}': ${octet} is not an octet"
    address=$(((address << 8) | 10#${octet}))
  done
  ((prefix <= 32)) || usage_error "invalid CIDR '${cidr}': the prefix is over 32"
  host_mask=$(((1 << (32 - prefix)) - 1))
  if (((address & host_mask) != 0)); then
    local network=$((address & ~host_mask & 0xffffffff))
    usage_error "invalid CIDR '${cidr}': host bits are set; the block is $((network >> 24)).$(((network >> 16) & 255)).$(((network >> 8) & 255)).$((network & 255))/${prefix}"
  fi
  CANONICAL_CIDR="$((10#${octets[0]})).$((10#${octets[1]})).$((10#${octets[2]})).$((10#${octets[3]}))/${prefix}"
}

canonicalize_ipv6_cidr() {
  local cidr="$1" lower address prefix head tail group
  local -a groups=() head_groups=() tail_groups=()
  lower="${cidr,,}"
  [[ "${lower}" =~ ^([0-9a-f:]{2,39})/([0-9]{1,3})$ ]] ||
    usage_error "invalid CIDR '${cidr}': expected an IPv6 block such as 2001:db8::/32 (hexadecimal groups, no embedded IPv4)"
  address="${BASH_REMATCH[1]}"
  prefix=$((10#${BASH_REMATCH[2]}))
  ((prefix <= 128)) || usage_error "invalid CIDR '${cidr}': the prefix is over 128"
  # A lone ':' at either end is an empty group that splitting would not show.
  [[ ! "${address}" =~ ^:[^:]|[^:]:$ ]] || usage_error "invalid CIDR '${cidr}': an empty group at either end"
  if [[ "${address}" == *::* ]]; then
    head="${address%%::*}"
    tail="${address#*::}"
    [[ "${tail}" != *::* ]] || usage_error "invalid CIDR '${cidr}': '::' may appear only once"
    [[ -z "${head}" ]] || IFS=: read -r -a head_groups <<<"${head}"
    [[ -z "${tail}" ]] || IFS=: read -r -a tail_groups <<<"${tail}"
    ((${#head_groups[@]} + ${#tail_groups[@]} <= 7)) ||
      usage_error "invalid CIDR '${cidr}': too many groups around '::'"
    groups=("${head_groups[@]}")
    local fill=$((8 - ${#head_groups[@]} - ${#tail_groups[@]}))
    while ((fill-- > 0)); do groups+=(0); done
    groups+=("${tail_groups[@]}")
  else
    IFS=: read -r -a groups <<<"${address}"
  fi
  ((${#groups[@]} == 8)) || usage_error "invalid CIDR '${cidr}': an IPv6 address has 8 groups"
  local -a values=()
  for group in "${groups[@]}"; do
    [[ "${group}" =~ ^[0-9a-f]{1,4}$ ]] ||
      usage_error "invalid CIDR '${cidr}': each group is 1 to 4 hexadecimal digits"
    values+=($((16#${group})))
  done

  local i start host_bits
  for i in "${!values[@]}"; do
    start=$((i * 16))
    ((prefix < start + 16)) || continue
    if ((prefix <= start)); then
      host_bits=${values[i]}
    else
      host_bits=$((values[i] & (0xffff >> (prefix - start))))
    fi
    ((host_bits == 0)) || usage_error "invalid CIDR '${cidr}': host bits are set below the /${prefix} prefix"
  done

  # RFC 5952: the longest run of two or more zero groups (the first of equal ones) becomes '::'.
  local best_start=-1 best_length=1 run_start=-1
  for i in 0 1 2 3 4 5 6 7 8; do
    if ((i < 8 && values[i] == 0)); then
      ((run_start >= 0)) || run_start=${i}
    elif ((run_start >= 0)); then
      if ((i - run_start > best_length)); then
        best_start=${run_start}
        best_length=$((i - run_start))
      fi
      run_start=-1
    fi
  done
  local text='' separator=''
  for i in "${!values[@]}"; do
    if ((best_start >= 0 && i >= best_start && i < best_start + best_length)); then
      ((i != best_start)) || { text+='::'; separator=''; }
      continue
    fi
    text+="${separator}$(printf '%x' "${values[i]}")"
    separator=':'
  done
  CANONICAL_CIDR="${text}/${prefix}"
}

# validate_cidr CIDR: an IPv4 or IPv6 block, in its canonical spelling or not (see canonicalize_cidr).
validate_cidr() {
  canonicalize_cidr "$1"
}

readonly INSTANCE_STATES='pending running stopping stopped shutting-down terminated'

validate_state() {
  [[ " ${INSTANCE_STATES} " == *" $1 "* ]] ||
    usage_error "invalid state '$1': expected one of ${INSTANCE_STATES}"
}

# --- calling AWS --------------------------------------------------------------------------------

# aws_error_text LINE: EC2's own words from the CLI's line "An error occurred (Code) when calling the
# X operation (reached max retries: 4): words". An emulator that quotes a name as a one-element set
# ('{'nokey'}') has it put back as 'nokey', so a person reads the name they gave.
aws_error_text() {
  local line="$1"
  local pattern='^An error occurred \([^)]*\)( when calling the [A-Za-z0-9-]+ operation)?( \(reached max retries: [0-9]+\))?: (.*)$'
  if [[ "${line}" =~ ${pattern} ]]; then
    line="${BASH_REMATCH[3]}"
  fi
  printf '%s\n' "${line}" | sed -E "s/\\{'([^'{}]*)'\\}/\\1/g"
}

# classify_aws_failure STATUS STDERR: map a failed aws call to our error document and exit code.
classify_aws_failure() {
  local status="$1" stderr="$2" code='' message
  message="$(printf '%s\n' "${stderr}" | sed '/^[[:space:]]*$/d' | tail -n 1)"
  [[ -n "${message}" ]] || message="aws exited with status ${status} and said nothing"
  if [[ "${stderr}" =~ An\ error\ occurred\ \(([A-Za-z0-9.]+)\) ]]; then
    code="${BASH_REMATCH[1]}"
    message="$(aws_error_text "${message}")"
  fi

  if ((status == 124 || status == 137)); then
    fail Timeout "${EXIT_TIMEOUT}" "${AWS_DEADLINE_MESSAGE:-the aws call did not finish within its time bound}"
  fi
  case "${code}" in
  *NotFound* | InvalidInstanceID.Unavailable)
    fail "${code}" "${EXIT_NOT_FOUND}" "${message}" ;;
  IncorrectInstanceState | IncorrectState | InvalidInstanceState)
    fail "${code}" "${EXIT_INCORRECT_STATE}" "${message}" ;;
  DependencyViolation | *.Duplicate | *.InUse | IdempotentParameterMismatch)
    fail "${code}" "${EXIT_CONFLICT}" "${message}" ;;
  Throttling | ThrottlingException | RequestLimitExceeded | RequestThrottled | ServiceUnavailable | \
    Unavailable | InternalError | InternalFailure | InsufficientInstanceCapacity | SlowDown)
    fail "${code}" "${EXIT_THROTTLED}" "${message}" ;;
  AuthFailure | UnauthorizedOperation | InvalidClientTokenId | SignatureDoesNotMatch | ExpiredToken | \
    RequestExpired | OptInRequired | Blocked | AccessDenied | AccessDeniedException | MissingAuthenticationToken)
    fail "${code}" "${EXIT_AUTH}" "${message}" ;;
  InvalidParameter* | MissingParameter | *.Malformed | InvalidAMIName.* | InvalidBlockDeviceMapping | \
    Unsupported | UnsupportedOperation | InvalidInput | ValidationError)
    fail "${code}" "${EXIT_USAGE}" "${message}" ;;
  '') ;;
  *)
    fail "${code}" "${EXIT_OTHER}" "${message}" ;;
  esac

  # No AWS error code: the CLI itself failed before or after talking to EC2.
  case "${stderr}" in
  *'Unable to locate credentials'* | *'Partial credentials found'* | *'could not be found'*'profile'* | \
    *'The config profile'*)
    fail NoCredentials "${EXIT_AUTH}" "${message}" ;;
  *'Could not connect to the endpoint URL'* | *'Connect timeout on endpoint URL'* | \
    *'Read timeout on endpoint URL'* | *'Connection was closed'* | *'reached max retries'*)
    fail ServiceUnavailable "${EXIT_THROTTLED}" "${message}" ;;
  *'Unable to parse response'* | *'invalid XML received'*)
    fail InvalidAwsResponse "${EXIT_OTHER}" "${message}" ;;
  esac
  fail AwsCliError "${EXIT_OTHER}" "${message}"
}

# aws_call LIMIT OPERATION [ARG...]: run one aws ec2 call bounded by LIMIT seconds. On success it
# prints the call's stdout; on failure its stderr, and returns its status. Call it only as
# $(aws_call ...): it sets the traps of that subshell, which starts with none of its own, so no
# trap of the calling script is replaced. The output waits in a temporary folder, removed however
# the subshell ends: normally, on an error, or on TERM, INT or HUP (the service signals the
# script's whole process group on a timeout and at shutdown, Ctrl-C does in a terminal). The call
# runs in the background because bash runs a trap only once the foreground command is over, and
# `wait` is what a signal interrupts at once. --foreground keeps the CLI in our process group, so
# whoever stops us stops it too.
aws_call() {
  local limit="$1" operation="$2" status=0 signal
  shift 2
  AWS_CALL_DIR=''
  AWS_CALL_PID=''
  trap aws_call_cleanup EXIT
  for signal in TERM INT HUP; do
    # shellcheck disable=SC2064 # the signal's name is meant to be expanded now
    trap "aws_call_cleanup; trap - ${signal}; kill -s ${signal} \"\${BASHPID}\"" "${signal}"
  done
  AWS_CALL_DIR="$(mktemp -d)"
  local -a endpoint=()
  aws_endpoint_option endpoint
  timeout --foreground --kill-after=5 "${limit}" aws ec2 "${operation}" --output=json "${endpoint[@]}" "$@" \
    >"${AWS_CALL_DIR}/stdout" 2>"${AWS_CALL_DIR}/stderr" &
  AWS_CALL_PID="$!"
  wait "${AWS_CALL_PID}" || status=$?
  AWS_CALL_PID=''
  if ((status == 0)); then
    cat -- "${AWS_CALL_DIR}/stdout"
  else
    cat -- "${AWS_CALL_DIR}/stderr"
  fi
  return "${status}"
}

# aws_endpoint_option ARRAY: set ARRAY to the --endpoint-url the environment names, if any. AWS CLI v2
# before 2.13 ignores AWS_ENDPOINT_URL; v1 and later v2 take the option as they take the variable. The
# EC2 variable wins over the general one, and AWS_IGNORE_CONFIGURED_ENDPOINT_URLS turns both off, as in
# the CLIs that read them.
aws_endpoint_option() {
  local -n option="$1"
  local url="${AWS_ENDPOINT_URL_EC2:-${AWS_ENDPOINT_URL:-}}"
  option=()
  if [[ -n "${url}" && "${AWS_IGNORE_CONFIGURED_ENDPOINT_URLS:-}" != [Tt][Rr][Uu][Ee] ]]; then
    option=(--endpoint-url="${url}")
  fi
}

# The traps' work: stop the call if it still runs, remove its folder.
aws_call_cleanup() {
  if [[ -n "${AWS_CALL_PID:-}" ]]; then
    kill -TERM -- "${AWS_CALL_PID}" 2>/dev/null || true
    AWS_CALL_PID=''
  fi
  if [[ -n "${AWS_CALL_DIR:-}" ]]; then
    rm -rf -- "${AWS_CALL_DIR}"
    AWS_CALL_DIR=''
  fi
}

# aws_ec2 OPERATION [--option=value...]: run one EC2 call and print its JSON output.
# Bounded by AWS_CALL_TIMEOUT_S, or by AWS_CALL_DEADLINE (a value of $SECONDS) when a wait loop
# sets one.
aws_ec2() {
  aws_ec2_unless '' "$@"
}

# aws_ec2_unless CODE OPERATION [--option=value...]: aws_ec2, except that a refusal with EC2's error CODE
# prints nothing and returns EXIT_NOT_FOUND, for the caller to decide what it means. Explicit throughout:
# a caller that captures a failure (x="$(...)" || ...) runs this without errexit.
aws_ec2_unless() {
  local tolerated="$1" operation="$2" limit="${AWS_CALL_TIMEOUT_S}" output status
  shift 2
  if [[ -n "${AWS_CALL_DEADLINE:-}" ]]; then
    limit=$((AWS_CALL_DEADLINE - SECONDS))
    ((limit >= 1)) || limit=1
  fi
  status=0
  output="$(aws_call "${limit}" "${operation}" "$@")" || status=$?
  if ((status != 0)); then
    if [[ -n "${tolerated}" && "${output}" == *"An error occurred (${tolerated})"* ]]; then
      return "${EXIT_NOT_FOUND}"
    fi
    classify_aws_failure "${status}" "${output}"
  fi
  # Some calls print nothing on success; an empty document stands for that.
  [[ -n "${output}" ]] || output='{}'
  if ! jq -e 'type == "object"' >/dev/null 2>&1 <<<"${output}"; then
    fail InvalidAwsOutput "${EXIT_OTHER}" "aws ec2 ${operation} printed something that is not a JSON object"
  fi
  printf '%s\n' "${output}"
}

# json_strings VALUE...: a JSON array of the values, in order. Each goes in as the value of --arg:
# jq reads a word after --args that starts with - as an option of its own, so text from a caller
# (a tag key such as -n) must never be passed that way.
json_strings() {
  local -a named=()
  local value index=0
  for value in "$@"; do
    named+=(--arg "v${index}" "${value}")
    index=$((index + 1))
  done
  # shellcheck disable=SC2016 # jq program: $n and $ARGS are jq's
  jq -cn "${named[@]}" --argjson n "$#" '[range(0; $n) as $i | $ARGS.named["v\($i)"]]'
}

# json_filter NAME VALUE...: the CLI's --filters JSON, built by jq.
json_filter() {
  local name="$1"
  shift
  jq -cn --arg name "${name}" '[{Name: $name, Values: $ARGS.positional}]' --args "$@"
}

# --- instance documents -------------------------------------------------------------------------

# The one shape every script prints for an instance (see README.md, "Instance document").
# Input: {reservations: describe-instances output, volumes: {volume id: size in GiB}}.
# shellcheck disable=SC2016 # jq program: its $names are jq variables
readonly INSTANCE_JQ='
  def tag($key): [(.Tags // [])[] | select(.Key == $key) | .Value][0];
  def blank_to_null: if . == null or . == "" or . == "None" then null else . end;
  # EC2 sends "2026-11-01T12:00:00.000Z", which AWS CLI v1 prints as it came; v2 (and v1 set to
  # cli_timestamp_format = iso8601) prints "2026-11-01T12:00:00+00:00". Either becomes the UTC spelling
  # EC2 sends, with milliseconds; text of any other shape is left as it is.
  def utc_timestamp:
    [if type == "string" then capture("^(?<second>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})([.](?<fraction>[0-9]+))?(?<zone>Z|[+-][0-9]{2}:[0-9]{2})?$") else empty end][0] as $t
    | if $t == null then .
      else
        (if $t.zone == null or $t.zone == "Z" then 0
         else ($t.zone[1:3] | tonumber) * 3600 + ($t.zone[4:6] | tonumber) * 60
           | if $t.zone[0:1] == "-" then 0 - . else . end
         end) as $offset
        | ((($t.second + "Z") | fromdateiso8601) - $offset | todate)[0:19] + "." + ((($t.fraction // "") + "000")[0:3]) + "Z"
      end;
  def root_volume_size($sizes):
    .RootDeviceName as $root
    | [(.BlockDeviceMappings // [])[] | select(.DeviceName == $root) | .Ebs.VolumeId][0] as $volume
    | if $volume == null then null else $sizes[$volume] end;
  def instance($sizes):
    {
      id: .InstanceId,
      name: (tag("Name") | blank_to_null),
      state: .State.Name,
      public_ip: (.PublicIpAddress | blank_to_null),
      private_ip: (.PrivateIpAddress | blank_to_null),
      ami: .ImageId,
      instance_type: .InstanceType,
      storage_gb: root_volume_size($sizes),
      key_name: (.KeyName | blank_to_null),
      security_group_ids: [(.SecurityGroups // [])[] | .GroupId],
      launch_time: (.LaunchTime | utc_timestamp),
      client_token: ((.ClientToken | blank_to_null) // (tag("ec2-creator:client-token") | blank_to_null)),
      managed: (tag("ManagedBy") == "ec2-creator"),
      tags: ((.Tags // []) | map({(.Key): (.Value // "")}) | add // {})
    };
'

# described_by_filter OPERATION FILTER START FOLD ID...: OPERATION (describe-instances,
# describe-volumes) filtered by FILTER on the ids, at most 200 a call (EC2's limit on filter values),
# each answer folded into START by the jq program FOLD, which sees the result so far as $acc.
described_by_filter() {
  local operation="$1" filter="$2" acc="$3" fold="$4" chunk page
  shift 4
  local -a ids=("$@")
  while ((${#ids[@]} > 0)); do
    chunk="$(json_filter "${filter}" "${ids[@]:0:200}")"
    ids=("${ids[@]:200}")
    # Explicit: a caller that captures a failure (x="$(...)" || ...) runs this without errexit.
    page="$(aws_ec2 "${operation}" --filters="${chunk}")" || return
    acc="$(jq -c --argjson acc "${acc}" "${fold}" <<<"${page}")" || return
  done
  printf '%s\n' "${acc}"
}

# volume_sizes VOLUME_ID...: {"vol-…": size} for the volumes that still exist. Filtering (rather
# than --volume-ids) tolerates a volume deleted between the two calls.
volume_sizes() {
  # shellcheck disable=SC2016 # jq program: $acc is a jq variable
  described_by_filter describe-volumes volume-id '{}' '$acc + ([.Volumes[] | {(.VolumeId): .Size}] | add // {})' "$@"
}

# Whether instance documents carry storage_gb. Reading it costs a describe-volumes call; a caller
# that already knows the size (the service keeps it from the launch) turns this off with
# --no-storage, and storage_gb is then null.
READ_STORAGE=true

# instances_from_reservations: read describe-instances output on stdin, print a JSON array of
# instance documents (volume sizes looked up in one extra call, unless READ_STORAGE is false).
instances_from_reservations() {
  local reservations sizes='{}'
  local -a volume_ids=()
  reservations="$(cat)"
  if [[ "${READ_STORAGE}" == true ]]; then
    mapfile -t volume_ids < <(jq -r \
      '.Reservations[]?.Instances[]? | .RootDeviceName as $r
       | (.BlockDeviceMappings // [])[] | select(.DeviceName == $r) | .Ebs.VolumeId // empty' \
      <<<"${reservations}")
    if ((${#volume_ids[@]} > 0)); then
      sizes="$(volume_sizes "${volume_ids[@]}")"
    fi
  fi
  jq -c --argjson sizes "${sizes}" "${INSTANCE_JQ}"'
    [.Reservations[]?.Instances[]? | instance($sizes)]' <<<"${reservations}"
}

# instance_reservations INSTANCE_ID: describe-instances output for the instance, or exit 3 when EC2
# does not know it.
instance_reservations() {
  local id="$1" reservations
  reservations="$(aws_ec2 describe-instances --instance-ids="${id}")"
  if [[ "$(jq '[.Reservations[]?.Instances[]?] | length' <<<"${reservations}")" == 0 ]]; then
    fail InvalidInstanceID.NotFound "${EXIT_NOT_FOUND}" "the instance ID '${id}' does not exist"
  fi
  printf '%s\n' "${reservations}"
}

# instance_state RESERVATIONS: the state of the one instance in a describe-instances answer.
instance_state() {
  jq -r '[.Reservations[]?.Instances[]?][0].State.Name' <<<"$1"
}

# document_of RESERVATIONS: the instance document of the one instance in a describe-instances answer.
document_of() {
  instances_from_reservations <<<"$1" | jq '.[0]'
}

# describe_instance_document INSTANCE_ID: the instance document, or exit 3 when EC2 does not know it.
describe_instance_document() {
  local reservations
  reservations="$(instance_reservations "$1")"
  document_of "${reservations}"
}

# act_on_instance OPERATION INSTANCE_ID: make one state-changing call and print the state the
# instance was in before it and the state EC2 says it is in now ("running stopping").
act_on_instance() {
  local operation="$1" id="$2" answer states
  answer="$(aws_ec2 "${operation}" --instance-ids="${id}")"
  states="$(jq -r --arg id "${id}" '[.StartingInstances[]?, .StoppingInstances[]?, .TerminatingInstances[]?]
    | map(select(.InstanceId == $id))[0] // {} | "\(.PreviousState.Name // "") \(.CurrentState.Name // "")"' \
    <<<"${answer}")"
  [[ "${states}" =~ ^[a-z-]+\ [a-z-]+$ ]] ||
    fail InvalidAwsOutput "${EXIT_OTHER}" "aws ec2 ${operation} did not report the states of ${id}"
  printf '%s\n' "${states}"
}

# visible_reservations INSTANCE_ID: describe-instances output for the instance, or nothing and
# EXIT_NOT_FOUND while EC2 does not show it (it says InvalidInstanceID.NotFound, or an emulator answers
# with no instance).
visible_reservations() {
  local id="$1" reservations status=0
  reservations="$(aws_ec2_unless InvalidInstanceID.NotFound describe-instances --instance-ids="${id}")" || status=$?
  ((status == 0)) || return "${status}"
  [[ "$(jq '[.Reservations[]?.Instances[]?] | length' <<<"${reservations}")" != 0 ]] || return "${EXIT_NOT_FOUND}"
  printf '%s\n' "${reservations}"
}

# wait_for_state INSTANCE_ID TARGET TIMEOUT_S POLL_S ALLOWED_PASSING_STATES [--just-launched]:
# poll until TARGET, print the instance document. A state outside TARGET and the passing ones
# means someone else changed the instance: a conflict, not something to wait out. Each poll is one
# describe-instances call; volume sizes, which a state change cannot alter, are read once at the end.
# With --just-launched, EC2 not showing the instance yet is waited out too: its reads lag behind a
# launch (InvalidInstanceID.NotFound for a few seconds, as AWS documents), so the read is repeated
# with a growing pause (1, 2, 4 … s, never more than POLL_S) until EC2 shows it or the bound runs out.
wait_for_state() {
  local id="$1" target="$2" timeout_s="$3" poll_s="$4" passing="$5" unseen="${6:-}" reservations state='' remaining
  local deadline=$((SECONDS + timeout_s)) stuck pause=1 status
  err "waiting up to ${timeout_s}s for ${id} to be ${target}"
  while true; do
    # The bound may cut a poll short: the error still says what the last poll saw.
    stuck="${id} did not become ${target} within ${timeout_s}s"
    [[ -z "${state}" ]] || stuck="${id} is still ${state} after ${timeout_s}s (wanted ${target})"
    if [[ "${unseen}" == --just-launched ]]; then
      stuck="${id} was launched, but EC2 did not show it within ${timeout_s}s"
      status=0
      reservations="$(AWS_CALL_DEADLINE="${deadline}" AWS_DEADLINE_MESSAGE="${stuck}" visible_reservations "${id}")" ||
        status=$?
      if ((status == EXIT_NOT_FOUND)); then
        remaining=$((deadline - SECONDS))
        ((remaining > 0)) || fail Timeout "${EXIT_TIMEOUT}" "${stuck}"
        ((pause <= poll_s)) || pause="${poll_s}"
        ((pause <= remaining)) || pause="${remaining}"
        err "EC2 does not show ${id} yet (its reads lag behind a launch); asking again in ${pause}s"
        sleep "${pause}"
        pause=$((pause * 2))
        continue
      fi
      # Any other failure has printed its error document already.
      ((status == 0)) || exit "${status}"
      # Once shown, it is known: from now on EC2 not knowing it means it is gone.
      unseen=''
    else
      reservations="$(AWS_CALL_DEADLINE="${deadline}" AWS_DEADLINE_MESSAGE="${stuck}" instance_reservations "${id}")"
    fi
    state="$(instance_state "${reservations}")"
    if [[ "${state}" == "${target}" ]]; then
      document_of "${reservations}"
      return 0
    fi
    if [[ " ${passing} " != *" ${state} "* ]]; then
      fail IncorrectInstanceState "${EXIT_INCORRECT_STATE}" \
        "${id} became ${state} while waiting for ${target}"
    fi
    remaining=$((deadline - SECONDS))
    if ((remaining <= 0)); then
      fail Timeout "${EXIT_TIMEOUT}" "${id} is still ${state} after ${timeout_s}s (wanted ${target})"
    fi
    sleep "$((poll_s < remaining ? poll_s : remaining))"
  done
}
