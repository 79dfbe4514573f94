#!/usr/bin/env bash
#
# Jenkins job "destroy", first stage: check the parameters and read the instance (GET /instances/ID)
# before anyone is asked to approve, so the approver sees what would be terminated and a wrong id fails
# at once. Changes nothing.
#
# Parameters (environment): INSTANCE_ID, CONFIRM_DESTROY (must be true); API_URL and API_TOKEN from the
# Jenkins credential. The instance is written to $RESULTS_DIR/instance-to-destroy.json. Exit codes as
# create_instance.sh; 1 also when the instance is already terminated.

# shellcheck source=lib/api.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/api.sh"

main() {
  init_result instance-to-destroy
  local id confirmed state
  id="$(valid_instance_id)"
  confirmed="$(param_boolean CONFIRM_DESTROY false)"
  [[ "${confirmed}" == true ]] ||
    bad_parameter "CONFIRM_DESTROY is not true: tick it to terminate ${id} (termination cannot be undone)"
  api_configuration

  api_request GET "/instances/${id}"
  expect_status 'reading the instance' "${RESULT_FILE}" 200
  save_response "${RESULT_FILE}"
  state="$(jq -r '.state // empty' "${RESULT_FILE}")"
  [[ "${state}" != terminated ]] || die "${EXIT_API_ERROR}" "instance ${id} is already terminated: there is nothing to destroy"
  info ''
  info "Instance ${id} will be terminated once the destroy is approved:"
  print_instance <"${RESULT_FILE}"
  info "Saved to ${RESULT_FILE}"
}

main "$@"
