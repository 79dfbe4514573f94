#!/usr/bin/env bash
#
# Jenkins job "list": the instances the ec2-creator API knows (GET /instances, every page).
#
# Parameters (environment): STATE (one of pending, running, stopping, stopped, shutting-down,
# terminated; empty or "any" for all), NAME_FILTER (exact name, optional), INCLUDE_TERMINATED
# (true/false, default false); API_URL and API_TOKEN from the Jenkins credential. The answer,
# {"instances": [...]}, is written to $RESULTS_DIR/instance-list.json. Exit codes as create_instance.sh.

# shellcheck source=lib/api.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/api.sh"

readonly PAGE_SIZE=1000 MAX_PAGES=100

validate() {
  STATE="$(param STATE)"
  [[ "${STATE}" != any ]] || STATE=''
  if [[ -n "${STATE}" ]]; then
    local known=" ${INSTANCE_STATES[*]} "
    [[ "${known}" == *" ${STATE} "* ]] || bad_parameter "STATE '${STATE}' must be one of: any ${INSTANCE_STATES[*]}"
  fi
  NAME_FILTER="$(param NAME_FILTER)"
  ((${#NAME_FILTER} <= 128)) || bad_parameter 'NAME_FILTER must be at most 128 characters'
  [[ ! "${NAME_FILTER}" =~ [[:cntrl:]] ]] || bad_parameter 'NAME_FILTER must not hold control characters'
  INCLUDE_TERMINATED="$(param_boolean INCLUDE_TERMINATED false)"
}

# query CURSOR: the query string, every value URL-encoded by jq.
query() {
  jq -rn --arg state "${STATE}" --arg name "${NAME_FILTER}" --arg terminated "${INCLUDE_TERMINATED}" \
    --arg cursor "$1" --arg limit "${PAGE_SIZE}" '
    [["state", $state], ["name", $name], ["include_terminated", $terminated], ["limit", $limit], ["cursor", $cursor]]
    | map(select(.[1] != "") | "\(.[0])=\(.[1] | @uri)") | join("&")'
}

main() {
  init_result instance-list
  validate
  api_configuration

  local all="${WORK_DIR}/all.json" cursor='' page=0
  printf '[]' >"${all}"
  while true; do
    page=$((page + 1))
    api_request GET "/instances?$(query "${cursor}")"
    expect_status 'list' "${RESULT_FILE}" 200
    jq -s '.[0] + .[1].instances' "${all}" "${RESPONSE_FILE}" >"${all}.next"
    mv -f -- "${all}.next" "${all}"
    cursor="$(jq -r '.next_cursor // empty' "${RESPONSE_FILE}")"
    [[ -n "${cursor}" ]] || break
    ((page < MAX_PAGES)) || die "${EXIT_API_ERROR}" "more than ${MAX_PAGES} pages of instances: narrow the list with STATE or NAME_FILTER"
  done
  jq '{instances: .}' "${all}" >"${RESULT_FILE}"

  local count
  count="$(jq 'length' "${all}")"
  info ''
  if ((count == 0)); then
    info 'No instances.'
  else
    printf '%-20s  %-14s  %-12s  %-16s  %s\n' ID STATE TYPE 'PUBLIC IP' NAME
    local id state type ip name
    while IFS=$'\t' read -r id state type ip name; do
      printf '%-20s  %-14s  %-12s  %-16s  %s\n' "${id}" "${state}" "${type}" "${ip}" "${name}"
    done < <(jq -r '.[] | [.id, .state, .instance_type, (.public_ip // "-"), .name] | @tsv' "${all}")
  fi
  local filters=''
  [[ -z "${STATE}" ]] || filters+=" in state ${STATE}"
  [[ -z "${NAME_FILTER}" ]] || filters+=" named \"${NAME_FILTER}\""
  info "${count} instance(s)${filters}"
  info "Answer saved to ${RESULT_FILE}"
}

main "$@"
