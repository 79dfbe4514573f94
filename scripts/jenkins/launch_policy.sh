#!/usr/bin/env bash
#
# Jenkins job "create", first stage: read the server's launch policy (GET /launch-policy) and check the
# parameters against it before anything is created. The job refreshes its INSTANCE_TYPE choices from the
# list this writes, so they follow the server's ALLOWED_INSTANCE_TYPES instead of a copy in the Jenkinsfile.
#
# Parameters (environment): INSTANCE_TYPE and STORAGE_GB, each checked when given (the job's first build
# has no parameters yet: the policy is then only read); API_URL and API_TOKEN from the Jenkins credential.
# Writes $RESULTS_DIR/launch-policy.json (the answer) and $RESULTS_DIR/instance-types.txt (the allowed
# types, one a line). Exit codes: 0 the parameters fit, 1 the API failed or answered no launch policy,
# 2 a parameter the policy refuses (nothing was created), 3 not configured, 5 curl or jq missing.

# shellcheck source=lib/api.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/api.sh"

# What the job relies on; a server too old to have /launch-policy answers 404 before this is reached.
readonly POLICY_SHAPE='
  (.allowed_instance_types | type == "array" and length > 0 and all(type == "string"))
  and (.max_storage_gb | type == "number" and . >= 1 and floor == .)
  and (.max_instances | type == "number")'

refused() { die "${EXIT_BAD_PARAMETER}" "$* (nothing was created)"; }

main() {
  init_result launch-policy
  local types_file="${RESULTS_DIR}/instance-types.txt"
  rm -f -- "${types_file}"
  api_configuration

  api_request GET /launch-policy
  expect_status 'reading the launch policy' "${RESULT_FILE}" 200
  save_response "${RESULT_FILE}"
  jq -e "${POLICY_SHAPE}" "${RESULT_FILE}" >/dev/null 2>&1 ||
    die "${EXIT_API_ERROR}" "GET /launch-policy answered something that is not a launch policy (saved to ${RESULT_FILE})"

  jq -r '.allowed_instance_types[]' "${RESULT_FILE}" >"${types_file}"
  local -a allowed
  mapfile -t allowed <"${types_file}"
  local max_storage max_instances list
  max_storage="$(jq -r '.max_storage_gb' "${RESULT_FILE}")"
  max_instances="$(jq -r '.max_instances' "${RESULT_FILE}")"
  list="$(jq -r '.allowed_instance_types | join(", ")' "${RESULT_FILE}")"
  info "Launch policy of ${API_BASE}: instance types ${list}; storage at most ${max_storage} GiB; at most ${max_instances} instances"

  local type storage
  type="$(param INSTANCE_TYPE)"
  if [[ -n "${type}" ]]; then
    local known=" ${allowed[*]} "
    [[ "${type}" != *' '* && "${known}" == *" ${type} "* ]] ||
      refused "INSTANCE_TYPE '${type}' is not allowed by the server, which allows: ${list}. The create job's INSTANCE_TYPE choices are refreshed from this list: build it again with one of them"
    info "INSTANCE_TYPE ${type} is allowed"
  fi
  storage="$(param STORAGE_GB)"
  # A malformed size is create_instance.sh's to report; only a well-formed one is compared here.
  if [[ "${storage}" =~ ^[1-9][0-9]{0,4}$ ]]; then
    ((storage <= max_storage)) ||
      refused "STORAGE_GB ${storage} is above the server's limit of ${max_storage} GiB (MAX_STORAGE_GB)"
    info "STORAGE_GB ${storage} is within the limit"
  fi
  info "Policy saved to ${RESULT_FILE}"
}

main "$@"
