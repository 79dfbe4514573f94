# shellcheck shell=bash
#
# Several instances in one run: start_instance.sh, stop_instance.sh and destroy_instance.sh given
# more than one id. Each AWS call covers every id (one describe, one change, one describe per poll),
# because the CLI's start-up, not EC2, is what costs. What goes wrong for one id is that id's own
# error in the result; it does not stop the others.
#
# The result is one document, {"instances": [...], "errors": [...]}, each list in the order the ids
# were given; an error entry is {"instance_id", "exit_code", "error": {"code", "message"}}, with the
# exit code a single-id run would have ended with. The run exits 0 when every id succeeded and
# EXIT_SOME_FAILED when any did not. A failure that is not any one id's (usage, credentials,
# throttling) ends the run as it would end a single-id run: an error document and its own exit code.

# The per-id failures so far (a JSON array). Set only from the script's own shell, never from $(...).
BATCH_ERRORS='[]'

# batch_fail INSTANCE_ID CODE EXIT_CODE MESSAGE: record one id's failure and say it on stderr.
batch_fail() {
  local id="$1" code="$2" status="$3" message="$4"
  err "${id}: ${message}"
  BATCH_ERRORS="$(jq -c --arg id "${id}" --arg code "${code}" --argjson status "${status}" --arg message "${message}" \
    '. + [{instance_id: $id, exit_code: $status, error: {code: $code, message: $message}}]' <<<"${BATCH_ERRORS}")"
}

# batch_failed_ids: the ids that have failed so far, one per line.
batch_failed_ids() {
  jq -r '.[].instance_id' <<<"${BATCH_ERRORS}"
}

# unique_instance_ids ID...: validate every id (exit 2 before any AWS call) and set INSTANCE_IDS to
# them in order, each once.
unique_instance_ids() {
  local id
  INSTANCE_IDS=()
  for id in "$@"; do
    validate_instance_id "${id}"
    if [[ " ${INSTANCE_IDS[*]} " == *" ${id} "* ]]; then
      err "${id} was given more than once; acting on it once"
      continue
    fi
    INSTANCE_IDS+=("${id}")
  done
}

# reservations_of ID...: describe-instances output for those of the ids EC2 knows. A filter, unlike
# --instance-ids, leaves an unknown id out instead of failing the call for all of them.
reservations_of() {
  # shellcheck disable=SC2016 # jq program: $acc is a jq variable
  described_by_filter describe-instances instance-id '{"Reservations":[]}' \
    '{Reservations: ($acc.Reservations + (.Reservations // []))}' "$@"
}

# ids_with_states RESERVATIONS ID...: one line "ID STATE" per id, in order; STATE is "-" when EC2 did
# not report the id.
ids_with_states() {
  local reservations="$1"
  shift
  jq -r '([.Reservations[]?.Instances[]? | {(.InstanceId): .State.Name}] | add // {}) as $states
    | $ARGS.positional[] | "\(.) \($states[.] // "-")"' --args "$@" <<<"${reservations}"
}

# only_instances RESERVATIONS ID...: the answer narrowed to those ids.
only_instances() {
  local reservations="$1"
  shift
  jq -c '{Reservations: [.Reservations[]? | .Instances = [.Instances[]? | select(.InstanceId | IN($ARGS.positional[]))]
    | select(.Instances | length > 0)]}' --args "$@" <<<"${reservations}"
}

# merged_reservations A B: two describe-instances answers as one.
merged_reservations() {
  jq -c --argjson more "$2" '{Reservations: (.Reservations + $more.Reservations)}' <<<"$1"
}

# change_states OPERATION ID...: make one state-changing call for all ids and print
# {"i-…": {"previous": "running", "current": "stopping"}, …}. Its failure ends the run (the call
# changed nothing for any id).
change_states() {
  local operation="$1" answer
  shift
  # Explicit, as in reservations_of.
  answer="$(aws_ec2 "${operation}" --instance-ids "$@")" || return
  jq -c '[.StartingInstances[]?, .StoppingInstances[]?, .TerminatingInstances[]?
    | {(.InstanceId): {previous: (.PreviousState.Name // ""), current: (.CurrentState.Name // "")}}] | add // {}' \
    <<<"${answer}"
}

# change_states_or_refusal OPERATION ID...: like change_states, but a failure does not end the run:
# it prints the failure's error document and returns its exit code. EC2 refuses the call for all ids
# when one of them is unknown or in a state that does not allow it (exit 3 or 10); the caller can then
# find out which and go on with the others. Any other failure is the caller's to end the run with.
change_states_or_refusal() {
  local output status=0
  output="$(change_states "$@" 3>&1)" || status=$?
  printf '%s\n' "${output}"
  return "${status}"
}

# wait_for_states TARGET TIMEOUT_S POLL_S PASSING ID...: poll every id still waiting with one call
# until each is TARGET; record an error for an id that vanishes, turns to a state outside TARGET and
# PASSING, or is still on its way when the bound runs out. Sets WAITED_RESERVATIONS to the last
# answer for the ids that reached TARGET.
wait_for_states() {
  local target="$1" timeout_s="$2" poll_s="$3" passing="$4"
  shift 4
  local -a waiting=("$@") still=() reached=()
  local deadline=$((SECONDS + timeout_s)) reservations state id remaining status
  local -A last_state=()
  WAITED_RESERVATIONS='{"Reservations":[]}'
  err "waiting up to ${timeout_s}s for ${waiting[*]} to be ${target}"
  while ((${#waiting[@]} > 0)); do
    status=0
    reservations="$(AWS_CALL_DEADLINE="${deadline}" reservations_of "${waiting[@]}" 3>&1)" || status=$?
    if ((status == EXIT_TIMEOUT)); then
      break
    elif ((status != 0)); then
      printf '%s\n' "${reservations}" >&3
      exit "${status}"
    fi
    still=()
    reached=()
    # One jq for every id ("id state" lines, state "-" when EC2 no longer reports it): a jq per id per
    # poll would cost more than the poll.
    while read -r id state; do
      if [[ "${state}" == - ]]; then
        batch_fail "${id}" InvalidInstanceID.NotFound "${EXIT_NOT_FOUND}" "${id} vanished while waiting for ${target}"
      elif [[ "${state}" == "${target}" ]]; then
        reached+=("${id}")
      elif [[ " ${passing} " == *" ${state} "* ]]; then
        last_state["${id}"]="${state}"
        still+=("${id}")
      else
        batch_fail "${id}" IncorrectInstanceState "${EXIT_INCORRECT_STATE}" "${id} became ${state} while waiting for ${target}"
      fi
    done < <(ids_with_states "${reservations}" "${waiting[@]}")
    if ((${#reached[@]} > 0)); then
      WAITED_RESERVATIONS="$(merged_reservations "${WAITED_RESERVATIONS}" "$(only_instances "${reservations}" "${reached[@]}")")"
    fi
    waiting=("${still[@]}")
    ((${#waiting[@]} > 0)) || break
    remaining=$((deadline - SECONDS))
    ((remaining > 0)) || break
    sleep "$((poll_s < remaining ? poll_s : remaining))"
  done
  for id in "${waiting[@]}"; do
    if [[ -n "${last_state["${id}"]:-}" ]]; then
      batch_fail "${id}" Timeout "${EXIT_TIMEOUT}" "${id} is still ${last_state["${id}"]} after ${timeout_s}s (wanted ${target})"
    else
      batch_fail "${id}" Timeout "${EXIT_TIMEOUT}" "${id} did not become ${target} within ${timeout_s}s"
    fi
  done
}

# print_batch_result DOCUMENTS ID...: print the result (documents and errors in the order of the
# ids) and exit 0, or EXIT_SOME_FAILED when any id failed.
print_batch_result() {
  local documents="$1"
  shift
  jq -n --argjson documents "${documents}" --argjson errors "${BATCH_ERRORS}" '
    $ARGS.positional as $order
    | def rank($id): ($order | index($id));
    {instances: ($documents | sort_by(rank(.id))), errors: ($errors | sort_by(rank(.instance_id)))}' \
    --args "$@"
  if [[ "${BATCH_ERRORS}" != '[]' ]]; then
    exit "${EXIT_SOME_FAILED}"
  fi
}
