#!/usr/bin/env bash
#
# Jenkins, every instance job (after each build): the build's description, "ID (NAME)", so the build
# history shows which instance each build touched. Taken from the answers in $RESULTS_DIR, else from the
# parameters INSTANCE_ID and INSTANCE_NAME; prints nothing when neither is known (the list job).
# Sends nothing; always exits 0.

# shellcheck source=lib/api.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/api.sh"

# The final answer first; a destroy's answer may lack the name its check stage read.
readonly ANSWERS=(instance-create instance-start instance-stop instance-destroy instance-to-destroy)

# printable TEXT: one line, no control characters, at most 128 characters (EC2 names are free text).
printable() {
  local text="${1//[[:cntrl:]]/ }"
  printf '%s' "${text:0:128}"
}

main() {
  local results id='' name='' answer file found_id found_name
  results="$(param RESULTS_DIR)"
  results="${results:-${WORKSPACE:-${PWD}}/results}"
  for answer in "${ANSWERS[@]}"; do
    file="${results}/${answer}.json"
    [[ -f "${file}" ]] || continue
    # A problem document's "instance" is the request path, not an instance.
    IFS=$'\t' read -r found_id found_name < <(jq -r '
      (if (.instance | type) == "object" then .instance else . end)
      | if type == "object" then [(.id // "" | tostring), (.name // "" | tostring)] else ["", ""] end
      | @tsv' "${file}" 2>/dev/null || true) || true
    [[ -n "${id}" || ! "${found_id:-}" =~ ${INSTANCE_ID_RE} ]] || id="${found_id}"
    [[ -n "${name}" ]] || name="${found_name:-}"
  done
  if [[ -z "${id}" ]]; then
    id="$(param INSTANCE_ID)"
    [[ "${id}" =~ ${INSTANCE_ID_RE} ]] || id=''
  fi
  [[ -n "${name}" ]] || name="$(param INSTANCE_NAME)"
  name="$(printable "${name}")"

  if [[ -n "${id}" && -n "${name}" ]]; then
    printf '%s (%s)\n' "${id}" "${name}"
  elif [[ -n "${id}${name}" ]]; then
    printf '%s\n' "${id}${name}"
  fi
}

main "$@"
