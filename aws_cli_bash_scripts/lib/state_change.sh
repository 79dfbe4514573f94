# shellcheck shell=bash
# The option lists are read by parse_options, which the scripts source through lib/common.sh.
# shellcheck disable=SC2034
#
# start_instance.sh and stop_instance.sh differ only in the call they make and the state they wait
# for; this is the one implementation of both, for one id and for several (lib/batch.sh).

# state_change_usage VERB TARGET
state_change_usage() {
  local verb="$1" target="$2"
  cat <<USAGE
Usage: ${SCRIPT_NAME} [options] INSTANCE_ID...

${verb^} an instance, wait until it is ${target}, and print it as JSON
(see README.md, "Instance document").

Given several ids, ${verb} them all with one call per step and print
{"instances": [...], "errors": [...]}: each id that failed is listed in errors with its
own code, message and exit code, and does not stop the others (see README.md, "Several ids").

Options (each also as --option=value):
  --no-wait            print the instance as soon as EC2 accepted the request
  --no-precheck        skip the read that refuses a terminated instance before acting, for a
                       caller that knows the state (EC2 refuses it anyway; one AWS call fewer)
  --no-storage         leave storage_gb null instead of reading the root volume (one call fewer)
  --wait-timeout S     give up waiting after S seconds (default 600): exit 7
  --poll-interval S    seconds between checks while waiting (default 5)
  -h, --help           print this help

Environment: AWS_MAX_ATTEMPTS, AWS_CALL_TIMEOUT_S and the AWS CLI's own.
Exit codes: 0 ok, 1 other, 2 usage, 3 not found, 5 throttled/unavailable,
            6 credentials/permission, 7 timed out, 8 missing aws/jq,
            9 with several ids: some of them failed (the others succeeded; see errors),
            10 the instance's state does not allow it (EC2's IncorrectInstanceState: e.g. stopping a
            pending instance, starting a stopping one) or it turned to another while waited for.
USAGE
}

# shellcheck source=lib/batch.sh source-path=SCRIPTDIR/..
source "$(dirname -- "${BASH_SOURCE[0]}")/batch.sh"

readonly -a VALUE_OPTIONS=(--wait-timeout --poll-interval)
readonly -a FLAG_OPTIONS=(--no-wait --no-precheck --no-storage)

# parse_options calls these from inside state_change_main, whose locals they read and set.
usage() {
  state_change_usage "${verb}" "${target}"
}

take_option() {
  case "$1" in
  --no-wait) wait=false ;;
  --no-precheck) precheck=false ;;
  --no-storage) READ_STORAGE=false ;;
  --wait-timeout) WAIT_TIMEOUT_S="$2" ;;
  --poll-interval) POLL_INTERVAL_S="$2" ;;
  esac
}

# is_gone STATE: whether STATE is one no start or stop can leave.
is_gone() {
  [[ "$1" == shutting-down || "$1" == terminated ]]
}

# refuses VERB STATE: whether EC2 refuses to VERB an instance in STATE (IncorrectInstanceState): one that
# is gone, a pending one to stop, a stopping one to start. One such id makes EC2 refuse a call for all.
refuses() {
  is_gone "$2" || [[ "$1:$2" == stop:pending || "$1:$2" == start:stopping ]]
}

# refuse_when_gone VERB INSTANCE_ID STATE: exit 10 when STATE is one no start or stop can leave.
refuse_when_gone() {
  if is_gone "$3"; then
    fail IncorrectInstanceState "${EXIT_INCORRECT_STATE}" "cannot $1 $2: it is $3"
  fi
}

# state_change_main VERB OPERATION TARGET PASSING_STATES "$@"
state_change_main() {
  local verb="$1" operation="$2" target="$3" passing="$4"
  shift 4
  local wait=true precheck=true
  parse_options "$@"
  if ((${#POSITIONAL_ARGUMENTS[@]} > 1)); then
    state_change_many "${verb}" "${operation}" "${target}" "${passing}" "${POSITIONAL_ARGUMENTS[@]}"
    return 0
  fi
  one_positional INSTANCE_ID "${POSITIONAL_ARGUMENTS[@]}"
  local instance_id="${ARGUMENT}"
  validate_instance_id "${instance_id}"
  validate_wait_options
  require_tools

  # Checking first gives a clear answer before anything changes, and keeps an emulator that would
  # revive a terminated instance from doing so. EC2 itself refuses to start or stop a terminated
  # instance; the state in its answer is checked as well because an emulator may not (moto revives it).
  if [[ "${precheck}" == true ]]; then
    local reservations
    reservations="$(instance_reservations "${instance_id}")"
    refuse_when_gone "${verb}" "${instance_id}" "$(instance_state "${reservations}")"
  fi
  local states
  states="$(act_on_instance "${operation}" "${instance_id}")"
  refuse_when_gone "${verb}" "${instance_id}" "${states%% *}"
  err "${verb} ${instance_id} (was ${states%% *})"
  if [[ "${wait}" == true ]]; then
    wait_for_state "${instance_id}" "${target}" "${WAIT_TIMEOUT_S}" "${POLL_INTERVAL_S}" "${passing}"
  else
    describe_instance_document "${instance_id}"
  fi
}

# refusable_ids VERB ID...: read the ids in one call, record an error for each that EC2 does not know
# or whose state refuses VERB, and set ACTIONABLE_IDS to the rest.
refusable_ids() {
  local verb="$1" reservations state id
  shift
  reservations="$(reservations_of "$@")"
  ACTIONABLE_IDS=()
  while read -r id state; do
    if [[ "${state}" == - ]]; then
      batch_fail "${id}" InvalidInstanceID.NotFound "${EXIT_NOT_FOUND}" "the instance ID '${id}' does not exist"
    elif refuses "${verb}" "${state}"; then
      batch_fail "${id}" IncorrectInstanceState "${EXIT_INCORRECT_STATE}" "cannot ${verb} ${id}: it is ${state}"
    else
      ACTIONABLE_IDS+=("${id}")
    fi
  done < <(ids_with_states "${reservations}" "$@")
}

# state_change_many VERB OPERATION TARGET PASSING ID...: the several-id run of state_change_main,
# whose locals (wait, precheck) it reads.
state_change_many() {
  local verb="$1" operation="$2" target="$3" passing="$4" changes='' status id state
  shift 4
  unique_instance_ids "$@"
  validate_wait_options
  require_tools
  local -a ids=("${INSTANCE_IDS[@]}")
  ACTIONABLE_IDS=("${ids[@]}")

  if [[ "${precheck}" == true ]]; then
    refusable_ids "${verb}" "${ids[@]}"
  fi
  if ((${#ACTIONABLE_IDS[@]} > 0)); then
    status=0
    changes="$(change_states_or_refusal "${operation}" "${ACTIONABLE_IDS[@]}")" || status=$?
    if ((status != 0 && status != EXIT_NOT_FOUND && status != EXIT_CONFLICT && status != EXIT_INCORRECT_STATE)); then
      # No one id's failure (throttling, credentials): the run ends with it, as a one-id run would.
      printf '%s\n' "${changes}" >&3
      exit "${status}"
    fi
    if ((status != 0)); then
      # Without the precheck, one id EC2 refuses fails the call for all: find it, then act on the rest.
      err "EC2 refused ${operation} for all ids: $(jq -r '.error.message' <<<"${changes}")"
      refusable_ids "${verb}" "${ACTIONABLE_IDS[@]}"
      changes='{}'
      if ((${#ACTIONABLE_IDS[@]} > 0)); then
        changes="$(change_states "${operation}" "${ACTIONABLE_IDS[@]}")"
      fi
    fi
  fi

  # As in the one-id run, the state before the call is checked as well: EC2 refuses to start or stop a
  # terminated instance, but an emulator may revive it instead (moto does).
  local -a changed=()
  local previous
  while read -r id previous state; do
    if [[ "${state}" == - ]]; then
      batch_fail "${id}" InvalidAwsOutput "${EXIT_OTHER}" "aws ec2 ${operation} did not report the state of ${id}"
    elif is_gone "${previous}"; then
      batch_fail "${id}" IncorrectInstanceState "${EXIT_INCORRECT_STATE}" "cannot ${verb} ${id}: it is ${previous}"
    else
      err "${verb} ${id} (was ${previous})"
      changed+=("${id}")
    fi
  done < <(jq -r '. as $changes | $ARGS.positional[]
    | "\(.) \($changes[.].previous // "-") \($changes[.].current // "-")"' --args "${ACTIONABLE_IDS[@]}" <<<"${changes:-"{}"}")

  local documents='[]' reservations
  if ((${#changed[@]} > 0)); then
    if [[ "${wait}" == true ]]; then
      wait_for_states "${target}" "${WAIT_TIMEOUT_S}" "${POLL_INTERVAL_S}" "${passing}" "${changed[@]}"
      reservations="${WAITED_RESERVATIONS}"
    else
      reservations="$(reservations_of "${changed[@]}")"
    fi
    documents="$(instances_from_reservations <<<"${reservations}")"
  fi
  print_batch_result "${documents}" "${ids[@]}"
}
