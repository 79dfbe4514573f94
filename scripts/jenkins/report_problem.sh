#!/usr/bin/env bash
#
# Jenkins, every instance job (after a failed build): repeat what the API answered at the end of the log,
# where people look first: status, title, detail, the failing fields and the request id that finds the
# server's log lines. Reads the answers the stage scripts saved in $RESULTS_DIR (the archived results/*.json).
# Sends nothing; always exits 0.

# shellcheck source=lib/api.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/api.sh"

readonly IS_PROBLEM='type == "object" and (.status | type) == "number" and (.title | type) == "string"'

main() {
  local results file shown=0
  results="$(param RESULTS_DIR)"
  results="${results:-${WORKSPACE:-${PWD}}/results}"
  shopt -s nullglob
  for file in "${results}"/*.json; do
    if jq -e "${IS_PROBLEM}" "${file}" >/dev/null 2>&1; then
      jq -r --arg file "results/${file##*/}" '
        "The ec2-creator API answered HTTP \(.status) \(.title)",
        "  detail:     \(.detail // "-")",
        (.errors // [] | .[] | "  - \(.field): \(.message)"),
        "  request id: \(.request_id // "-")",
        "  answer:     \($file) (archived)"' "${file}"
      shown=$((shown + 1))
    elif ! jq -e . "${file}" >/dev/null 2>&1; then
      info "The ec2-creator API (or a proxy before it) answered something that is not JSON, archived as results/${file##*/}:"
      head -c 500 -- "${file}" | tr -d '\000-\010\013-\037'
      info ''
      shown=$((shown + 1))
    fi
  done
  ((shown > 0)) ||
    info 'No problem answer from the ec2-creator API was archived: the build stopped before the API answered or without asking it (a parameter, the launch policy, the credential, a tool on the agent, the network). The error above says which.'
}

main "$@"
