#!/usr/bin/env bash
#
# Jenkins job "destroy": terminate an instance through the ec2-creator API (DELETE /instances/ID).
#
# Parameters (environment): INSTANCE_ID, CONFIRM_DESTROY (must be true: termination cannot be undone);
# API_URL and API_TOKEN from the Jenkins credential. The record the API keeps afterwards is written to
# $RESULTS_DIR/instance-destroy.json as {"id", "destroyed": true, "instance": {...} or null}.
# Exit codes as create_instance.sh.

# shellcheck source=lib/api.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/api.sh"

main() {
  init_result instance-destroy
  local id confirmed
  id="$(valid_instance_id)"
  confirmed="$(param_boolean CONFIRM_DESTROY false)"
  [[ "${confirmed}" == true ]] ||
    bad_parameter "CONFIRM_DESTROY is not true: tick it to terminate ${id} (termination cannot be undone)"
  api_configuration

  api_request DELETE "/instances/${id}"
  expect_status 'destroy' "${RESULT_FILE}" 204

  # DELETE answers no body: read back what the service recorded, for the summary and the archive.
  local instance=null
  api_request GET "/instances/${id}"
  if [[ "${HTTP_STATUS}" == 200 ]]; then
    instance="$(jq -c . "${RESPONSE_FILE}")"
  else
    error "the instance was destroyed, but reading it back answered HTTP ${HTTP_STATUS}"
  fi
  jq -n --arg id "${id}" --argjson instance "${instance}" '{id: $id, destroyed: true, instance: $instance}' >"${RESULT_FILE}"
  info ''
  info "Destroyed instance ${id}"
  if [[ "${instance}" != null ]]; then
    jq '.instance' "${RESULT_FILE}" | print_instance
  fi
  info "Answer saved to ${RESULT_FILE}"
}

main "$@"
