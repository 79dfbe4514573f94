#!/usr/bin/env bash
#
# Jenkins job "start": start an instance through the ec2-creator API (POST /instances/ID/start).
#
# Parameters (environment): INSTANCE_ID; API_URL and API_TOKEN from the Jenkins credential. The answer
# is written to $RESULTS_DIR/instance-start.json. Exit codes as create_instance.sh.

# shellcheck source=lib/api.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/api.sh"

main() {
  init_result instance-start
  local id
  id="$(valid_instance_id)"
  api_configuration

  api_request POST "/instances/${id}/start"
  expect_status 'start' "${RESULT_FILE}" 200
  save_response "${RESULT_FILE}"
  info ''
  info "Instance ${id} is $(jq -r .state "${RESULT_FILE}")"
  print_instance <"${RESULT_FILE}"
  info "Answer saved to ${RESULT_FILE}"
}

main "$@"
