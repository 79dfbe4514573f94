#!/usr/bin/env bash
#
# Set and remove tags on one instance that ec2-creator manages, and print it.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/tags.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/tags.sh"

# EC2 holds at most 50 tags on a resource: no run needs to name more.
readonly MAX_CHANGES=50

usage() {
  cat <<USAGE
Usage: ${SCRIPT_NAME} [options] [--] INSTANCE_ID

Set and remove tags on the instance, then print it as JSON (see README.md, "Instance document").
Only the instance is tagged, not its volume.

Options (each also as --option=value; at least one --set or --remove):
  --set KEY=VALUE  set the tag KEY (repeatable; split at the first '='). KEY 1-128, VALUE 0-256
                   characters: letters, digits, spaces and _ . : / = + - @.
                   ${EXPIRES_AT_TAG_KEY} takes an ISO 8601 UTC time such as 2026-11-24T10:00:00Z.
  --remove KEY     remove the tag KEY (repeatable; a tag the instance lacks is no error)
  --no-storage     leave storage_gb null instead of reading the root volume (one AWS call fewer)
  -h, --help       print this help

Keys that cannot be set or removed: Name, ${MANAGED_TAG_KEY}, ${CLIENT_TOKEN_TAG_KEY}, and any starting aws:.
${OWNER_TAG_KEY} and the other ec2-creator: keys may be.

Exit codes: 0 ok, 1 other, 2 usage, 3 not found, 4 not managed by ec2-creator,
            5 throttled/unavailable, 6 credentials/permission, 7 timed out, 8 missing aws/jq.
USAGE
}

readonly -a VALUE_OPTIONS=(--set --remove)
readonly -a FLAG_OPTIONS=(--no-storage)

# take_option NAME [VALUE]: sets main's locals (see lib/options.sh).
take_option() {
  case "$1" in
  --set) set_words+=("$2") ;;
  --remove) remove_keys+=("$2") ;;
  --no-storage) READ_STORAGE=false ;;
  esac
}

main() {
  local -a set_words=() remove_keys=() set_pairs=()
  parse_options "$@"
  one_positional INSTANCE_ID "${POSITIONAL_ARGUMENTS[@]}"
  local instance_id="${ARGUMENT}"
  validate_instance_id "${instance_id}"
  ((${#set_words[@]} + ${#remove_keys[@]} > 0)) || usage_error 'give at least one --set KEY=VALUE or --remove KEY'
  ((${#set_words[@]} <= MAX_CHANGES)) || usage_error "at most ${MAX_CHANGES} --set options are allowed"
  ((${#remove_keys[@]} <= MAX_CHANGES)) || usage_error "at most ${MAX_CHANGES} --remove options are allowed"

  local word key
  local -A seen=()
  for word in "${set_words[@]}"; do
    split_tag "${word}" --set
    validate_tag_key "${TAG_KEY}"
    refuse_key_for_change "${TAG_KEY}"
    validate_tag_value "${TAG_KEY}" "${TAG_VALUE}"
    [[ "${TAG_KEY}" != "${EXPIRES_AT_TAG_KEY}" ]] || validate_expires_at "${TAG_VALUE}"
    [[ -z "${seen["${TAG_KEY}"]+set}" ]] || usage_error "the tag key ${TAG_KEY} was given more than once"
    seen["${TAG_KEY}"]='set'
    set_pairs+=("${TAG_KEY}" "${TAG_VALUE}")
  done
  for key in "${remove_keys[@]}"; do
    validate_tag_key "${key}"
    refuse_key_for_change "${key}"
    case "${seen["${key}"]:-}" in
    set) usage_error "the tag key ${key} is both set and removed" ;;
    remove) usage_error "the tag key ${key} was given more than once" ;;
    esac
    seen["${key}"]='remove'
  done
  require_tools

  # The same check as destroy_instance.sh: a mistyped id must not retag somebody else's machine.
  local reservations before
  reservations="$(instance_reservations "${instance_id}")"
  before="$(document_of "${reservations}")"
  if [[ "$(jq -r '.managed' <<<"${before}")" != true ]]; then
    fail NotManaged "${EXIT_CONFLICT}" \
      "${instance_id} is not tagged ${MANAGED_TAG_KEY}=${MANAGED_TAG_VALUE}; its tags were left unchanged"
  fi

  local set_json remove_json
  set_json="$(tags_json "${set_pairs[@]}")"
  remove_json="$(json_strings "${remove_keys[@]}" | jq -c 'map({Key: .})')"
  if [[ "${set_json}" != '[]' ]]; then
    err "setting $(jq -r 'map(.Key) | join(", ")' <<<"${set_json}") on ${instance_id}"
    aws_ec2 create-tags --resources="${instance_id}" --tags="${set_json}" >/dev/null
  fi
  if [[ "${remove_json}" != '[]' ]]; then
    # Keys alone: the tag goes whatever its value.
    err "removing $(jq -r 'map(.Key) | join(", ")' <<<"${remove_json}") from ${instance_id}"
    aws_ec2 delete-tags --resources="${instance_id}" --tags="${remove_json}" >/dev/null
  fi

  # The instance as read a moment ago with the tags EC2 accepted: reading it again right away can
  # answer with the old tags on AWS, whose reads lag behind a write.
  jq --argjson set "${set_json}" --argjson remove "${remove_json}" '
    .tags = ((.tags // {}) + ($set | map({(.Key): .Value}) | add // {}) | delpaths($remove | map([.Key])))' \
    <<<"${before}"
}

main "$@"
