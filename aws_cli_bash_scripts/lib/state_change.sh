# shellcheck shell=bash
# The option lists are read by parse_options, which the scripts source through lib/common.sh.
# shellcheck disable=SC2034
#
# start_instance.sh and stop_instance.sh differ only in the call they make and the state they wait
# for; this is the one implementation of both.

# state_change_usage VERB TARGET
state_change_usage() {
  local verb="$1" target="$2"
  cat <<USAGE
Usage: ${SCRIPT_NAME} [options] INSTANCE_ID

${verb^} an instance, wait until it is ${target}, and print it as JSON
(see README.md, "Instance document").

Options (each also as --option=value):
  --no-wait            print the instance as soon as EC2 accepted the request
  --no-precheck        skip the read that refuses a terminated instance before acting, for a
                       caller that knows the state (EC2 refuses it anyway; one AWS call fewer)
  --no-storage         leave storage_gb null instead of reading the root volume (one call fewer)
  --wait-timeout S     give up waiting after S seconds (default 600): exit 7
  --poll-interval S    seconds between checks while waiting (default 5)
  -h, --help           print this help

Environment: AWS_MAX_ATTEMPTS, AWS_CALL_TIMEOUT_S and the AWS CLI's own.
Exit codes: 0 ok, 1 other, 2 usage, 3 not found, 4 the instance's state does not allow it,
            5 throttled/unavailable, 6 credentials/permission, 7 timed out, 8 missing aws/jq.
USAGE
}

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

# refuse_when_gone VERB INSTANCE_ID STATE: exit 4 when STATE is one no start or stop can leave.
refuse_when_gone() {
  case "$3" in
  shutting-down | terminated)
    fail IncorrectInstanceState "${EXIT_CONFLICT}" "cannot $1 $2: it is $3" ;;
  esac
}

# state_change_main VERB OPERATION TARGET PASSING_STATES "$@"
state_change_main() {
  local verb="$1" operation="$2" target="$3" passing="$4"
  shift 4
  local wait=true precheck=true
  parse_options "$@"
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
