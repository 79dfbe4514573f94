# shellcheck shell=bash
# TAG_KEYS and TAG_VALUES are read by the scripts that source this file.
# shellcheck disable=SC2034
#
# User tags (create_instance.sh --tag, tag_instance.sh --set/--remove): EC2's own rules for keys and
# values, the keys ec2-creator keeps for itself, and the tag lists as JSON. Sourced after common.sh,
# never run.

# EC2's tag characters: Unicode letters, separators, digits and _ . : / = + - @. bash's [[:alnum:]]
# depends on the locale's tables; jq's regex engine knows Unicode categories everywhere. \A and \z,
# not ^ and $: those also match beside a newline, which would let "ok\n; rm -rf /" through.
# shellcheck disable=SC2016 # jq program: $text, $min, $max are jq variables
readonly TAG_TEXT_JQ='
  if ($text | length) < $min then (if $min == 1 then "must not be empty" else "is too short" end)
  elif ($text | length) > $max then "is \($text | length) characters long; at most \($max) are allowed"
  elif ($text | test("\\A[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*\\z") | not)
    then "may hold only letters, digits, spaces and _ . : / = + - @"
  else empty end'

readonly MAX_USER_TAGS=10

require_jq() {
  command -v jq >/dev/null 2>&1 ||
    fail MissingDependency "${EXIT_MISSING_DEPENDENCY}" \
      'jq is not installed; install it (Debian: apt-get install jq) and try again'
}

# validate_tag_text WHAT TEXT MIN MAX: TEXT is MIN to MAX characters of EC2's tag characters, or a
# usage error that starts with WHAT.
validate_tag_text() {
  local what="$1" text="$2" min="$3" max="$4" problem
  require_jq
  problem="$(jq -rn --arg text "${text}" --argjson min "${min}" --argjson max "${max}" "${TAG_TEXT_JQ}")"
  [[ -z "${problem}" ]] || usage_error "${what} ${problem}"
}

# quoted TEXT: TEXT as a JSON string, so that a message shows a hostile key without acting on it.
quoted() {
  jq -rn --arg text "$1" '$text | @json'
}

validate_tag_key() {
  validate_tag_text "the tag key $(quoted "$1")" "$1" 1 128
}

validate_tag_value() {
  local key="$1" value="$2"
  validate_tag_text "the value of tag ${key}" "${value}" 0 256
}

# is_aws_key KEY: whether KEY is in the aws: namespace, which EC2 keeps to itself in any case.
is_aws_key() {
  [[ "${1,,}" == aws:* ]]
}

# refuse_key_for_create KEY: a --tag may not set what create_instance.sh sets itself, nor anything
# in the namespaces of AWS and of ec2-creator.
refuse_key_for_create() {
  local key="$1"
  if is_aws_key "${key}"; then
    usage_error "the tag key ${key} is reserved: keys starting aws: belong to AWS"
  fi
  if [[ "${key,,}" == ec2-creator:* ]]; then
    usage_error "the tag key ${key} is reserved: keys starting ec2-creator: are set by ec2-creator itself; give an expiry with --expires-at"
  fi
  case "${key}" in
  Name) usage_error 'the tag key Name is reserved: give the name as NAME' ;;
  "${OWNER_TAG_KEY}") usage_error "the tag key ${OWNER_TAG_KEY} is reserved: use --owner" ;;
  "${MANAGED_TAG_KEY}") usage_error "the tag key ${MANAGED_TAG_KEY} is reserved: ec2-creator marks its instances with it" ;;
  esac
}

# refuse_key_for_change KEY: tag_instance.sh may change what a person or the service decides (Owner,
# the expiry, user tags), never what identifies the instance: its Name, the ManagedBy mark and the
# launch's client token.
refuse_key_for_change() {
  local key="$1"
  if is_aws_key "${key}"; then
    usage_error "the tag key ${key} is reserved: keys starting aws: belong to AWS"
  fi
  case "${key}" in
  Name) usage_error 'the tag key Name cannot be changed here: it is the name the instance was created with' ;;
  "${MANAGED_TAG_KEY}") usage_error "the tag key ${MANAGED_TAG_KEY} cannot be changed: ec2-creator marks its instances with it" ;;
  "${CLIENT_TOKEN_TAG_KEY}") usage_error "the tag key ${CLIENT_TOKEN_TAG_KEY} cannot be changed: it records the launch's idempotency token" ;;
  esac
}

# split_tag WORD OPTION: KEY=VALUE, given to OPTION, split at the first '=' into TAG_KEY and TAG_VALUE (the value may hold '=').
split_tag() {
  local word="$1" option="$2"
  [[ "${word}" == *=* ]] || usage_error "${option} expects KEY=VALUE, got a word without '='"
  TAG_KEY="${word%%=*}"
  TAG_VALUE="${word#*=}"
}

# validate_expires_at TIME: an ISO 8601 UTC time, 2026-11-24T10:00:00Z or 2026-11-24T10:00:00.000Z,
# that exists on the calendar (no 30 February).
validate_expires_at() {
  local time="$1" whole
  [[ "${time}" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?Z$ ]] ||
    usage_error "invalid expiry time $(quoted "${time}"): expected ISO 8601 UTC such as 2026-11-24T10:00:00Z"
  whole="${time%.*}"
  [[ "${whole}" == *Z ]] || whole+=Z
  # jq turns an impossible date (30 February, hour 25) into another one: a round trip catches it.
  [[ "$(jq -rn --arg t "${whole}" 'try ($t | fromdateiso8601 | todateiso8601) catch ""')" == "${whole}" ]] ||
    usage_error "invalid expiry time '${time}': no such date and time"
}

# tags_json KEY VALUE [KEY VALUE...]: [{"Key": …, "Value": …}, …] in order.
tags_json() {
  json_strings "$@" | jq -c '[range(0; length; 2) as $i | {Key: .[$i], Value: .[$i + 1]}]'
}
