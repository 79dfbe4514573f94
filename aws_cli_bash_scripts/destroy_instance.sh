#!/usr/bin/env bash
#
# Terminate an instance that ec2-creator manages, and print it.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/batch.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/batch.sh"

usage() {
  cat <<USAGE
Usage: ${SCRIPT_NAME} [options] INSTANCE_ID...

Terminate the instance and print it as JSON (see README.md, "Instance document"). Termination
cannot be undone; its root volume is deleted with it. Terminating an instance that is already
terminated succeeds, says so, and changes nothing.

Given several ids, terminate them all with one call per step and print
{"instances": [...], "errors": [...]}: each id that failed (unknown, not managed) is listed in
errors with its own code, message and exit code, and does not stop the others.

Options (each also as --option=value):
  --wait               wait until the instance is terminated before printing it
  --wait-timeout S     with --wait, give up after S seconds (default 600): exit 7
  --poll-interval S    with --wait, seconds between checks (default 5)
  --allow-unmanaged    also terminate an instance not tagged ManagedBy=ec2-creator
  --no-storage         leave storage_gb null instead of reading the root volume (one call fewer)
  -h, --help           print this help

Environment: AWS_MAX_ATTEMPTS, AWS_CALL_TIMEOUT_S and the AWS CLI's own.
Exit codes: 0 ok, 1 other, 2 usage, 3 not found, 4 not managed by ec2-creator,
            5 throttled/unavailable, 6 credentials/permission, 7 timed out, 8 missing aws/jq,
            9 with several ids: some of them failed (see errors), 10 a state that does not allow it.
USAGE
}

readonly -a VALUE_OPTIONS=(--wait-timeout --poll-interval)
readonly -a FLAG_OPTIONS=(--wait --allow-unmanaged --no-storage)

# take_option NAME [VALUE]: sets main's locals (see lib/options.sh).
take_option() {
  case "$1" in
  --wait) wait=true ;;
  --allow-unmanaged) allow_unmanaged=true ;;
  --no-storage) READ_STORAGE=false ;;
  --wait-timeout) WAIT_TIMEOUT_S="$2" ;;
  --poll-interval) POLL_INTERVAL_S="$2" ;;
  esac
}

main() {
  local wait=false allow_unmanaged=false
  parse_options "$@"
  if ((${#POSITIONAL_ARGUMENTS[@]} > 1)); then
    destroy_many "${POSITIONAL_ARGUMENTS[@]}"
    return 0
  fi
  one_positional INSTANCE_ID "${POSITIONAL_ARGUMENTS[@]}"
  local instance_id="${ARGUMENT}"
  validate_instance_id "${instance_id}"
  validate_wait_options
  require_tools

  # A mistyped id must not take down somebody else's machine, nor a record whose tag someone removed.
  local reservations before
  reservations="$(instance_reservations "${instance_id}")"
  before="$(document_of "${reservations}")"
  if [[ "${allow_unmanaged}" != true && "$(jq -r '.managed' <<<"${before}")" != true ]]; then
    fail NotManaged "${EXIT_CONFLICT}" \
      "${instance_id} is not tagged ${MANAGED_TAG_KEY}=${MANAGED_TAG_VALUE}; pass --allow-unmanaged to terminate it anyway"
  fi
  if [[ "$(jq -r '.state' <<<"${before}")" == terminated ]]; then
    err "${instance_id} is already terminated; nothing to do"
    printf '%s\n' "${before}"
    return 0
  fi
  err "terminating ${instance_id}"
  local states
  states="$(act_on_instance terminate-instances "${instance_id}")"
  if [[ "${wait}" == true ]]; then
    wait_for_state "${instance_id}" terminated "${WAIT_TIMEOUT_S}" "${POLL_INTERVAL_S}" \
      'pending running stopping stopped shutting-down'
  else
    # The instance as it was read a moment ago, in the state EC2's answer reports: reading it again
    # would tell nothing more.
    jq --arg state "${states#* }" '.state = $state' <<<"${before}"
  fi
}

# destroy_many ID...: the several-id run of main, whose locals (wait, allow_unmanaged) it reads.
destroy_many() {
  unique_instance_ids "$@"
  validate_wait_options
  require_tools
  local -a ids=("${INSTANCE_IDS[@]}") doomed=()
  local reservations before id state managed

  # One read serves the managed check of every id (see main).
  reservations="$(reservations_of "${ids[@]}")"
  before="$(instances_from_reservations <<<"${reservations}")"
  local -a already=()
  while read -r id state managed; do
    if [[ "${state}" == - ]]; then
      batch_fail "${id}" InvalidInstanceID.NotFound "${EXIT_NOT_FOUND}" "the instance ID '${id}' does not exist"
    elif [[ "${allow_unmanaged}" != true && "${managed}" != true ]]; then
      batch_fail "${id}" NotManaged "${EXIT_CONFLICT}" \
        "${id} is not tagged ${MANAGED_TAG_KEY}=${MANAGED_TAG_VALUE}; pass --allow-unmanaged to terminate it anyway"
    elif [[ "${state}" == terminated ]]; then
      err "${id} is already terminated; nothing to do"
      already+=("${id}")
    else
      doomed+=("${id}")
    fi
  done < <(jq -r '(map({(.id): .}) | add // {}) as $by_id | $ARGS.positional[]
    | "\(.) \($by_id[.].state // "-") \($by_id[.].managed // false)"' --args "${ids[@]}" <<<"${before}")
  local terminated_already
  terminated_already="$(jq -c '[.[] | select(.id | IN($ARGS.positional[]))]' --args "${already[@]}" <<<"${before}")"

  local documents="${terminated_already}" changes waited
  if ((${#doomed[@]} > 0)); then
    err "terminating ${doomed[*]}"
    changes="$(change_states terminate-instances "${doomed[@]}")"
    if [[ "${wait}" == true ]]; then
      wait_for_states terminated "${WAIT_TIMEOUT_S}" "${POLL_INTERVAL_S}" \
        'pending running stopping stopped shutting-down' "${doomed[@]}"
      waited="$(instances_from_reservations <<<"${WAITED_RESERVATIONS}")"
      documents="$(jq -c --argjson more "${waited}" '. + $more' <<<"${documents}")"
    else
      # As read a moment ago, in the state EC2's answer reports (see main).
      documents="$(jq -c --argjson changes "${changes}" --argjson before "${before}" \
        '. + [$before[] | select($changes[.id]) | .state = $changes[.id].current]' <<<"${documents}")"
    fi
  fi
  print_batch_result "${documents}" "${ids[@]}"
}

main "$@"
