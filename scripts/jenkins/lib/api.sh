# shellcheck shell=bash
# The constants are read by the scripts that source this file.
# shellcheck disable=SC2034
#
# What the Jenkins job scripts share: strict mode, parameter reading and validation (the same rules as
# the API's JSON Schemas in app/schemas/common.ts), one HTTP call to the ec2-creator API, problem+json
# error reporting and the result file the Jenkinsfile archives. Sourced, never run.
#
# Environment (what Jenkins gives a job):
#   API_URL        base URL of the service, e.g. https://ec2-creator.example.org (from the credential)
#   API_TOKEN      optional bearer token (from the credential); sent as "Authorization: Bearer ..."
#   WORKSPACE      the job's workspace; results go to $RESULTS_DIR (default $WORKSPACE/results)
#   WORKSPACE_TMP  scratch space for the answer and the auth header (default $TMPDIR or /tmp)
#   API_TIMEOUT_S  how long one request may take (default 900: a create waits for EC2)
#   job parameters: INSTANCE_NAME, AMI_ID, INSTANCE_TYPE, STORAGE_GB, INSTANCE_ID, ... (see each script)

set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C.UTF-8

readonly EXIT_OK=0
readonly EXIT_API_ERROR=1
readonly EXIT_BAD_PARAMETER=2
readonly EXIT_NOT_CONFIGURED=3
readonly EXIT_MISSING_TOOL=5

# Kept identical to app/schemas/common.ts (bash ERE has no look-ahead: lengths are checked apart).
readonly INSTANCE_ID_RE='^i-([0-9a-f]{8}|[0-9a-f]{17})$'
readonly AMI_ID_RE='^ami-([0-9a-f]{8}|[0-9a-f]{17})$'
readonly INSTANCE_TYPE_RE='^[a-z][a-z0-9-]*\.[a-z0-9]+$'
readonly INSTANCE_NAME_RE='^[A-Za-z0-9][A-Za-z0-9 ._:/@+=-]{0,127}$'
readonly INSTANCE_STATES=(pending running stopping stopped shutting-down terminated)
readonly EBS_MAX_GB=16384

JOB_SCRIPT="$(basename -- "$0" .sh)"
readonly JOB_SCRIPT

info() { printf '%s\n' "$*"; }
error() { printf 'ERROR: %s\n' "$*" >&2; }
die() {
  local status="$1"
  shift
  error "$*"
  exit "${status}"
}

# A parameter problem: nothing has been sent.
bad_parameter() { die "${EXIT_BAD_PARAMETER}" "$* (no request was sent)"; }

require_tools() {
  local tool
  for tool in curl jq; do
    command -v "${tool}" >/dev/null 2>&1 ||
      die "${EXIT_MISSING_TOOL}" "${tool} is not installed on this agent (Debian: apt-get install ${tool})"
  done
}

# param NAME: the environment variable NAME with surrounding blanks removed (empty when unset).
param() {
  local value="${!1:-}"
  value="${value#"${value%%[![:space:]]*}"}"
  value="${value%"${value##*[![:space:]]}"}"
  printf '%s' "${value}"
}

require_param() {
  local value
  value="$(param "$1")"
  [[ -n "${value}" ]] || bad_parameter "parameter $1 is required: $2"
  printf '%s' "${value}"
}

valid_instance_id() {
  local value
  value="$(require_param INSTANCE_ID 'an EC2 instance id like i-0abcd1234ef567890')"
  [[ "${value}" =~ ${INSTANCE_ID_RE} ]] ||
    bad_parameter "INSTANCE_ID '${value}' is not an EC2 instance id like i-0abcd1234ef567890 (i- and 8 or 17 hex digits)"
  printf '%s' "${value}"
}

# param_boolean NAME DEFAULT: Jenkins hands boolean parameters over as "true"/"false".
param_boolean() {
  local raw value
  raw="$(param "$1")"
  value="${raw,,}"
  [[ -n "${value}" ]] || value="$2"
  case "${value}" in
  true | false) printf '%s' "${value}" ;;
  *) bad_parameter "$1 must be true or false, got '${raw}'" ;;
  esac
}

# --- configuration and the HTTP call ---------------------------------------------------------------

# init_result NAME: sets RESULT_FILE (RESULTS_DIR/NAME.json) and removes the one an earlier build left,
# so that a failed run never archives an old answer. A workspace outlives its builds: the first stage of
# a build (told apart by Jenkins' BUILD_TAG, recorded in RESULTS_DIR/.build) also removes every other
# answer an earlier build left, so nothing stale is archived, described or reported after this one.
init_result() {
  RESULTS_DIR="$(param RESULTS_DIR)"
  RESULTS_DIR="${RESULTS_DIR:-${WORKSPACE:-${PWD}}/results}"
  RESULT_FILE="${RESULTS_DIR}/$1.json"
  local build recorded=''
  build="$(param BUILD_TAG)"
  [[ ! -f "${RESULTS_DIR}/.build" ]] || recorded="$(<"${RESULTS_DIR}/.build")"
  if [[ -n "${build}" && -d "${RESULTS_DIR}" && "${recorded}" != "${build}" ]]; then
    rm -f -- "${RESULTS_DIR}"/*.json "${RESULTS_DIR}"/*.txt "${RESULTS_DIR}/.build"
  fi
  rm -f -- "${RESULT_FILE}"
}

api_configuration() {
  require_tools
  API_BASE="$(param API_URL)"
  [[ -n "${API_BASE}" ]] ||
    die "${EXIT_NOT_CONFIGURED}" "API_URL is not set: bind the Jenkins credential 'ec2-creator-api' (username = base URL, password = token) with withCredentials"
  [[ "${API_BASE}" =~ ^https?://[^[:space:]]+$ ]] ||
    die "${EXIT_NOT_CONFIGURED}" 'API_URL must be an http:// or https:// URL'
  API_BASE="${API_BASE%/}"
  API_TIMEOUT_S="$(param API_TIMEOUT_S)"
  API_TIMEOUT_S="${API_TIMEOUT_S:-900}"
  [[ "${API_TIMEOUT_S}" =~ ^[1-9][0-9]{0,4}$ ]] ||
    die "${EXIT_NOT_CONFIGURED}" "API_TIMEOUT_S must be a whole number of seconds, got '${API_TIMEOUT_S}'"

  mkdir -p -- "${RESULTS_DIR}" || die "${EXIT_NOT_CONFIGURED}" "cannot create ${RESULTS_DIR}"
  [[ -z "$(param BUILD_TAG)" ]] || param BUILD_TAG >"${RESULTS_DIR}/.build"

  # Scratch space for the response and the auth header (kept out of argv and of the archive). Jenkins
  # names WORKSPACE_TMP but does not create it.
  local scratch="${WORKSPACE_TMP:-${TMPDIR:-/tmp}}"
  mkdir -p -- "${scratch}" || die "${EXIT_NOT_CONFIGURED}" "cannot create ${scratch}"
  WORK_DIR="$(mktemp -d "${scratch}/ec2-creator-job.XXXXXX")"
  trap 'rm -rf -- "${WORK_DIR}"' EXIT
  chmod 700 "${WORK_DIR}"
  AUTH_HEADER_FILE=''
  if [[ -n "${API_TOKEN:-}" ]]; then
    AUTH_HEADER_FILE="${WORK_DIR}/auth-header"
    (umask 077 && printf 'Authorization: Bearer %s\n' "${API_TOKEN}" >"${AUTH_HEADER_FILE}")
  fi
}

# api_request METHOD PATH [BODY_FILE]: one call. Sets HTTP_STATUS, RESPONSE_FILE (the body) and
# REQUEST_ID. Dies when the service cannot be reached.
api_request() {
  local method="$1" path="$2" body_file="${3:-}"
  RESPONSE_FILE="${WORK_DIR}/response.json"
  local headers_file="${WORK_DIR}/response-headers"
  : >"${RESPONSE_FILE}"
  local -a args=(
    --silent --show-error
    --request "${method}"
    --connect-timeout 10 --max-time "${API_TIMEOUT_S}"
    --header 'Accept: application/json, application/problem+json'
    --header "User-Agent: ec2-creator-jenkins/${JOB_SCRIPT}"
    --output "${RESPONSE_FILE}" --dump-header "${headers_file}"
    --write-out '%{http_code}'
  )
  [[ -z "${body_file}" ]] || args+=(--header 'Content-Type: application/json' --data-binary "@${body_file}")
  [[ -z "${AUTH_HEADER_FILE}" ]] || args+=(--header "@${AUTH_HEADER_FILE}")

  local url="${API_BASE}${path}" curl_status=0
  info "${method} ${url}"
  HTTP_STATUS="$(curl "${args[@]}" -- "${url}")" || curl_status=$?
  if ((curl_status != 0)); then
    die "${EXIT_API_ERROR}" "could not reach the ec2-creator API at ${API_BASE} (curl exit ${curl_status})"
  fi
  REQUEST_ID="$(sed -n 's/^[Xx]-[Rr]equest-[Ii]d:[[:space:]]*\([^[:space:]]*\).*/\1/p' "${headers_file}" | tail -n 1)"
}

# save_response FILE: the answer, pretty-printed when it is JSON, as is otherwise.
save_response() {
  if jq . "${RESPONSE_FILE}" >"$1" 2>/dev/null; then
    return 0
  fi
  cp -- "${RESPONSE_FILE}" "$1"
}

# fail_with_problem WHAT RESULT_FILE: the API said no; report its problem detail and stop.
fail_with_problem() {
  local what="$1" file="$2" detail title
  save_response "${file}"
  if jq -e 'type == "object"' "${RESPONSE_FILE}" >/dev/null 2>&1; then
    title="$(jq -r '.title // empty' "${RESPONSE_FILE}")"
    detail="$(jq -r '.detail // empty' "${RESPONSE_FILE}")"
    error "${what} failed: HTTP ${HTTP_STATUS}${title:+ ${title}}"
    jq -r '.errors // [] | .[] | "  - \(.field): \(.message)"' "${RESPONSE_FILE}" >&2 || true
  else
    detail="$(head -c 500 -- "${RESPONSE_FILE}")"
    error "${what} failed: HTTP ${HTTP_STATUS} (not a problem+json answer)"
  fi
  [[ -z "${REQUEST_ID}" ]] || error "request id: ${REQUEST_ID}"
  die "${EXIT_API_ERROR}" "${detail:-no detail given}"
}

# expect_status WHAT RESULT_FILE CODE...: succeed on one of the codes, fail with the problem otherwise.
expect_status() {
  local what="$1" file="$2" code
  shift 2
  for code in "$@"; do
    [[ "${HTTP_STATUS}" == "${code}" ]] && return 0
  done
  fail_with_problem "${what}" "${file}"
}

# print_instance: a readable summary of one instance document (stdin).
print_instance() {
  jq -r '
    def v: if . == null or . == "" then "-" else tostring end;
    "  id:             \(.id | v)",
    "  name:           \(.name | v)",
    "  state:          \(.state | v)",
    "  type:           \(.instance_type | v)",
    "  ami:            \(.ami | v)",
    "  storage:        \(if .storage_gb == null then "-" else "\(.storage_gb) GiB" end)",
    "  public ip:      \(.public_ip | v)",
    "  private ip:     \(.private_ip | v)",
    "  security group: \(.security_group_id | v)",
    "  ssh:            \(.ssh_string | v)",
    "  tags:           \(.tags // {} | to_entries | map("\(.key)=\(.value)") | join(", ") | v)",
    "  expires:        \(.expires_at | v)"'
}

# change_state_job ACTION: the whole of the "start" and "stop" jobs, which differ only in the action.
change_state_job() {
  local action="$1" id
  init_result "instance-${action}"
  id="$(valid_instance_id)"
  api_configuration

  api_request POST "/instances/${id}/${action}"
  expect_status "${action}" "${RESULT_FILE}" 200
  save_response "${RESULT_FILE}"
  info ''
  info "Instance ${id} is $(jq -r .state "${RESULT_FILE}")"
  print_instance <"${RESULT_FILE}"
  info "Answer saved to ${RESULT_FILE}"
}
