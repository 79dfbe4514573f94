#!/usr/bin/env bash
#
# Jenkins job "create": launch an instance through the ec2-creator API (POST /instances).
#
# Parameters (environment): INSTANCE_NAME, AMI_ID, INSTANCE_TYPE, STORAGE_GB, CREATE_SECURITY_GROUP
# (true/false, default false); API_URL and API_TOKEN from the Jenkins credential. The answer is
# written to $RESULTS_DIR/instance-create.json. Exit codes: 0 created, 1 the API refused or failed,
# 2 bad parameter (nothing sent), 3 not configured, 5 curl or jq missing.

# shellcheck source=lib/api.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/api.sh"

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
}

main() {
  init_result instance-create
  validate
  api_configuration

  local body="${WORK_DIR}/request.json"
  jq -n \
    --arg name "${NAME}" --arg ami "${AMI}" --arg type "${TYPE}" \
    --argjson storage "${STORAGE}" --argjson security_group "${SECURITY_GROUP}" \
    '{name: $name, ami: $ami, instance_type: $type, storage_gb: $storage, create_security_group: $security_group}' \
    >"${body}"

  info "Creating instance '${NAME}' (${TYPE}, ${AMI}, ${STORAGE} GiB)"
  api_request POST /instances "${body}"
  expect_status 'create' "${RESULT_FILE}" 201
  save_response "${RESULT_FILE}"
  info ''
  info "Created instance $(jq -r .id "${RESULT_FILE}")"
  print_instance <"${RESULT_FILE}"
  info "Answer saved to ${RESULT_FILE}"
}

main "$@"
