#!/usr/bin/env bash
#
# Jenkins job "create": launch an instance through the ec2-creator API (POST /instances).
#
# Parameters (environment): INSTANCE_NAME, AMI_ID, INSTANCE_TYPE, STORAGE_GB, CREATE_SECURITY_GROUP
# (true/false, default false), TAGS (KEY=VALUE pairs, one a line or comma-separated; optional) and
# TTL_HOURS (1-8760; empty leaves the expiry to the server's default); API_URL and API_TOKEN from the
# Jenkins credential. The answer is written to $RESULTS_DIR/instance-create.json. Exit codes: 0 created,
# 1 the API refused or failed, 2 bad parameter (nothing sent), 3 not configured, 5 curl or jq missing.

# shellcheck source=lib/api.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/api.sh"

readonly MAX_USER_TAGS=10
# A year: the API caps it lower with MAX_TTL_HOURS, and says so when it does.
readonly MAX_TTL_HOURS=8760

# TAGS ($text) as {"tags": {KEY: VALUE, ...}} or {"problems": ["...", ...]}: EC2's tag rules, the keys
# ec2-creator keeps for itself (in any case, as the API refuses them), no key twice, at most $max tags.
# Parsed in jq rather than bash: lengths are counted in characters and the character classes are
# Unicode whatever the agent's locale. Blanks around a pair, a key or a value are dropped (a browser's
# text area sends CRLF line ends). \A and \z, not ^ and $, which also match beside a line break. jq
# 1.6's index() counts bytes, hence capture() to split, and its capture() makes an empty group null,
# hence the // "".
# shellcheck disable=SC2016 # jq program: $text and $max are jq variables
readonly TAGS_JQ='
  def trim: capture("\\A\\s*(?<t>.*?)\\s*\\z").t // "";
  def shown: @json;
  def text_problem($what; $min; $max):
    if length < $min then "\($what) must not be empty"
    elif length > $max then "\($what) is \(length) characters long; at most \($max) are allowed"
    elif test("\\A[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*\\z") | not
      then "\($what) may hold only letters, digits, spaces and _ . : / = + - @"
    else empty end;
  def reserved:
    (ascii_downcase) as $lower
    | if $lower | startswith("aws:") then "keys starting aws: belong to AWS"
      elif $lower | startswith("ec2-creator:") then "keys starting ec2-creator: are set by ec2-creator itself (give an expiry with TTL_HOURS)"
      elif $lower == "name" then "give the name as INSTANCE_NAME"
      elif $lower == "owner" then "ec2-creator sets the owner itself"
      elif $lower == "managedby" then "ec2-creator marks its instances with it"
      else empty end;
  [$text | split("\n")[] | split(",")[] | trim | select(length > 0)]
  | map(capture("\\A(?<key>[^=]*)=(?<value>.*)\\z") // {entry: .}
        | if has("key") then {key: (.key // "" | trim), value: (.value // "" | trim)} else . end) as $pairs
  | [ ( $pairs[]
        | if has("entry") then "\(.entry | shown) is not KEY=VALUE"
          else
            (.key | shown) as $key
            | (.key | text_problem("the key \($key)"; 1; 128)),
              (.key | reserved | "the key \($key) is reserved: \(.)"),
              (.value | text_problem(if length > 256 then "the value of \($key)" else "the value \(shown) of \($key)" end; 0; 256))
          end ),
      ( [$pairs[] | select(has("key")) | .key] | group_by(.)[] | select(length > 1)
        | "the key \(.[0] | shown) is given \(length) times" ),
      ( $pairs | select(length > $max) | "\(length) tags are given; at most \($max) are allowed" )
    ] as $problems
  | if $problems == [] then {tags: ($pairs | map({(.key): .value}) | add // {})} else {problems: $problems} end'

validate() {
  NAME="$(require_param INSTANCE_NAME 'a name for the instance, e.g. web-1')"
  [[ "${NAME}" =~ ${INSTANCE_NAME_RE} ]] ||
    bad_parameter "INSTANCE_NAME '${NAME}' must start with a letter or digit and hold at most 128 letters, digits, spaces and ._:/@+=-"

  AMI="$(require_param AMI_ID 'an AMI id like ami-1e749f67')"
  [[ "${AMI}" =~ ${AMI_ID_RE} ]] || bad_parameter "AMI_ID '${AMI}' is not an AMI id like ami-1e749f67 (ami- and 8 or 17 hex digits)"

  TYPE="$(require_param INSTANCE_TYPE 'an instance type like t3.micro')"
  if ((${#TYPE} < 3 || ${#TYPE} > 32)) || [[ ! "${TYPE}" =~ ${INSTANCE_TYPE_RE} ]]; then
    bad_parameter "INSTANCE_TYPE '${TYPE}' is not an instance type like t3.micro"
  fi

  STORAGE="$(require_param STORAGE_GB 'the root volume size in GiB, e.g. 8')"
  if [[ ! "${STORAGE}" =~ ^[1-9][0-9]{0,4}$ ]] || ((STORAGE > EBS_MAX_GB)); then
    bad_parameter "STORAGE_GB '${STORAGE}' must be a whole number of GiB between 1 and ${EBS_MAX_GB}"
  fi

  SECURITY_GROUP="$(param_boolean CREATE_SECURITY_GROUP false)"

  USER_TAGS="$(valid_tags)"
  TTL="$(param TTL_HOURS)"
  if [[ -n "${TTL}" ]] && { [[ ! "${TTL}" =~ ^[1-9][0-9]{0,3}$ ]] || ((TTL > MAX_TTL_HOURS)); }; then
    bad_parameter "TTL_HOURS '${TTL}' must be a whole number of hours between 1 and ${MAX_TTL_HOURS}, or empty for the server's default"
  fi
}

# valid_tags: the TAGS parameter as a JSON object, {} when it holds no pair; a bad parameter naming
# every problem otherwise.
valid_tags() {
  require_tools
  local parsed problems
  parsed="$(jq -cn --arg text "${TAGS:-}" --argjson max "${MAX_USER_TAGS}" "${TAGS_JQ}")"
  problems="$(jq -r '.problems // [] | join("; ")' <<<"${parsed}")"
  [[ -z "${problems}" ]] ||
    bad_parameter "TAGS: ${problems} (KEY=VALUE pairs, one a line or comma-separated, e.g. team=web)"
  jq -c '.tags' <<<"${parsed}"
}

main() {
  init_result instance-create
  validate
  api_configuration

  local body="${WORK_DIR}/request.json"
  jq -n \
    --arg name "${NAME}" --arg ami "${AMI}" --arg type "${TYPE}" \
    --argjson storage "${STORAGE}" --argjson security_group "${SECURITY_GROUP}" \
    --argjson tags "${USER_TAGS}" --arg ttl "${TTL}" \
    '{name: $name, ami: $ami, instance_type: $type, storage_gb: $storage, create_security_group: $security_group}
     + (if $tags == {} then {} else {tags: $tags} end)
     + (if $ttl == "" then {} else {ttl_hours: ($ttl | tonumber)} end)' \
    >"${body}"

  info "Creating instance '${NAME}' (${TYPE}, ${AMI}, ${STORAGE} GiB)"
  [[ "${USER_TAGS}" == '{}' ]] || info "Tags: $(jq -r 'to_entries | map("\(.key)=\(.value)") | join(", ")' <<<"${USER_TAGS}")"
  if [[ -n "${TTL}" ]]; then
    info "Time to live: ${TTL} hours"
  else
    info "Time to live: the server's default"
  fi
  api_request POST /instances "${body}"
  expect_status 'create' "${RESULT_FILE}" 201
  save_response "${RESULT_FILE}"
  info ''
  info "Created instance $(jq -r .id "${RESULT_FILE}")"
  print_instance <"${RESULT_FILE}"
  info "Answer saved to ${RESULT_FILE}"
}

main "$@"
