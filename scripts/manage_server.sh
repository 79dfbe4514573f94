#!/usr/bin/env bash
#
# Start, stop and inspect the ec2-creator server (the built dist/app/server.js), following the LSB
# init-script conventions. The server runs detached in its own session, with Jenkins' process-tree killer
# told to spare it, so a Jenkins job can start it and end without taking it down.
set -euo pipefail
set +m # no job control: a background child stays in our process group, so setsid needs no fork

SCRIPT_NAME="$(basename -- "$0")"
REPO_ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
SERVER_ENTRY="${REPO_ROOT}/dist/app/server.js"

# LSB init-script exit codes.
readonly EXIT_OK=0 EXIT_FAILED=1 EXIT_USAGE=2 EXIT_NOT_RUNNING=3 EXIT_PRIVILEGE=4 EXIT_NOT_INSTALLED=5
readonly EXIT_NOT_CONFIGURED=6
readonly STATUS_DEAD_PID_FILE=1 STATUS_UNKNOWN=4

usage() {
  cat <<USAGE
Usage: ${SCRIPT_NAME} [options] start|stop|restart|status|logs

Manage the ec2-creator server (node dist/app/server.js, run from ${REPO_ROOT}).

  start    start it detached (own session, stdin /dev/null, output appended to the log) and wait until
           GET /health answers; a server that is already running is left alone
  stop     SIGTERM, wait up to the stop timeout, then SIGKILL; stopping a stopped server succeeds
  restart  stop, then start
  status   print PID, uptime and the health answer
  logs     print the last lines of the log

Options (each also as --option=value, and from the environment variable named after it):
  --port PORT            PORT             port the server listens on (default 8000)
  --host HOST            HOST             address it binds (default 127.0.0.1)
  --pid-file PATH        PID_FILE         PID file (default ./run/ec2-creator.pid)
  --log-dir DIR          LOG_DIR          log folder (default ./logs); the log is DIR/ec2-creator.log
  --start-timeout SEC    START_TIMEOUT_S  how long start waits for /health (default 30)
  --stop-timeout SEC     STOP_TIMEOUT_S   how long stop waits after SIGTERM before SIGKILL (default 15)
  -n, --lines N          LINES            log lines shown by logs and after a failed start (default 50)
  -h, --help             print this help
Relative paths are taken from the repository root. NODE_BIN names the node executable (default node).
Every other variable (DATABASE_URL, SCRIPTS_DIR, KEY_NAME, AWS_*, ...) passes through to the server.
The server gets JENKINS_NODE_COOKIE, BUILD_ID and JENKINS_SERVER_COOKIE set to dontKillMe, so that
Jenkins does not kill it when the build that started it ends; MANAGE_SERVER_JENKINS_OVERRIDE=false
leaves the caller's values in place.

Exit codes (LSB):
  status: 0 running, 1 dead but the PID file exists, 3 not running, 4 unknown (PID file unreadable)
  other:  0 success (also start when running, stop when stopped), 1 failed (e.g. the server did not
          become healthy), 2 usage, 4 no permission (PID file or log folder not writable),
          5 not installed (not built: run npm run build; node or setsid missing), 6 bad option value
USAGE
}

say() { printf '%s: %s\n' "${SCRIPT_NAME}" "$*"; }
warn() { printf '%s: %s\n' "${SCRIPT_NAME}" "$*" >&2; }
fail() {
  local code="$1"
  shift
  warn "$*"
  exit "${code}"
}
usage_error() {
  warn "$*"
  printf "Try '%s --help'.\n" "${SCRIPT_NAME}" >&2
  exit "${EXIT_USAGE}"
}

# Options: command line first, then environment, then defaults.
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
PID_FILE="${PID_FILE:-run/ec2-creator.pid}"
LOG_DIR="${LOG_DIR:-logs}"
START_TIMEOUT_S="${START_TIMEOUT_S:-30}"
STOP_TIMEOUT_S="${STOP_TIMEOUT_S:-15}"
LINES="${LINES:-50}"
NODE_BIN="${NODE_BIN:-node}"
MANAGE_SERVER_JENKINS_OVERRIDE="${MANAGE_SERVER_JENKINS_OVERRIDE:-true}"

# option_value NAME "$@": the value of --name VALUE or --name=VALUE; sets OPTION_VALUE and OPTION_SHIFT.
option_value() {
  local name="$1"
  shift
  if [[ "$1" == "${name}="* ]]; then
    OPTION_VALUE="${1#"${name}="}"
    OPTION_SHIFT=1
  elif (($# >= 2)); then
    OPTION_VALUE="$2"
    OPTION_SHIFT=2
  else
    usage_error "option ${name} needs a value"
  fi
}

parse_arguments() {
  ACTION=''
  while (($# > 0)); do
    case "$1" in
    -h | --help) usage; exit "${EXIT_OK}" ;;
    --port | --port=*) option_value --port "$@"; PORT="${OPTION_VALUE}"; shift "${OPTION_SHIFT}" ;;
    --host | --host=*) option_value --host "$@"; HOST="${OPTION_VALUE}"; shift "${OPTION_SHIFT}" ;;
    --pid-file | --pid-file=*) option_value --pid-file "$@"; PID_FILE="${OPTION_VALUE}"; shift "${OPTION_SHIFT}" ;;
    --log-dir | --log-dir=*) option_value --log-dir "$@"; LOG_DIR="${OPTION_VALUE}"; shift "${OPTION_SHIFT}" ;;
    --start-timeout | --start-timeout=*)
      option_value --start-timeout "$@"; START_TIMEOUT_S="${OPTION_VALUE}"; shift "${OPTION_SHIFT}" ;;
    --stop-timeout | --stop-timeout=*)
      option_value --stop-timeout "$@"; STOP_TIMEOUT_S="${OPTION_VALUE}"; shift "${OPTION_SHIFT}" ;;
    -n | --lines | --lines=*)
      if [[ "$1" == -n ]]; then option_value -n "$@"; else option_value --lines "$@"; fi
      LINES="${OPTION_VALUE}"; shift "${OPTION_SHIFT}" ;;
    -*) usage_error "unknown option '$1'" ;;
    *)
      [[ -z "${ACTION}" ]] || usage_error "expected one action, got '${ACTION}' and '$1'"
      ACTION="$1"
      shift
      ;;
    esac
  done
  [[ -n "${ACTION}" ]] || usage_error 'expected an action: start, stop, restart, status or logs'
  case "${ACTION}" in
  start | stop | restart | status | logs) ;;
  *) usage_error "unknown action '${ACTION}'" ;;
  esac
}

whole_number() { [[ "$1" =~ ^[0-9]+$ ]] && ((10#$1 <= 86400)); }

validate_options() {
  local name
  for name in PORT START_TIMEOUT_S STOP_TIMEOUT_S LINES; do
    whole_number "${!name}" || fail "${EXIT_NOT_CONFIGURED}" "${name} must be a whole number, got '${!name}'"
  done
  PORT=$((10#${PORT}))
  ((PORT >= 1 && PORT <= 65535)) || fail "${EXIT_NOT_CONFIGURED}" "PORT must be between 1 and 65535, got ${PORT}"
  [[ -n "${HOST}" && ! "${HOST}" =~ [[:space:]/] ]] || fail "${EXIT_NOT_CONFIGURED}" "HOST is not a host name or address: '${HOST}'"
  [[ -n "${PID_FILE}" ]] || fail "${EXIT_NOT_CONFIGURED}" 'PID_FILE is empty'
  [[ -n "${LOG_DIR}" ]] || fail "${EXIT_NOT_CONFIGURED}" 'LOG_DIR is empty'
  case "${MANAGE_SERVER_JENKINS_OVERRIDE}" in
  true | false) ;;
  *) fail "${EXIT_NOT_CONFIGURED}" "MANAGE_SERVER_JENKINS_OVERRIDE must be true or false, got '${MANAGE_SERVER_JENKINS_OVERRIDE}'" ;;
  esac
  # Relative paths are the repository's; the server runs from there too (./data/instances.db, .env).
  [[ "${PID_FILE}" == /* ]] || PID_FILE="${REPO_ROOT}/${PID_FILE#./}"
  [[ "${LOG_DIR}" == /* ]] || LOG_DIR="${REPO_ROOT}/${LOG_DIR#./}"
  LOG_FILE="${LOG_DIR}/ec2-creator.log"
  local check_host="${HOST}"
  case "${check_host}" in
  0.0.0.0 | '') check_host=127.0.0.1 ;;
  :: | '[::]') check_host='[::1]' ;;
  *:*) [[ "${check_host}" == \[* ]] || check_host="[${check_host}]" ;;
  esac
  HEALTH_URL="http://${check_host}:${PORT}/health"
}

# --- processes -------------------------------------------------------------------------------------

# is_our_server PID: the process exists and its command line is node running this checkout's server.
is_our_server() {
  local pid="$1" arg
  [[ -r "/proc/${pid}/cmdline" ]] || return 1
  local -a argv=()
  mapfile -d '' -t argv <"/proc/${pid}/cmdline" 2>/dev/null || return 1
  ((${#argv[@]} >= 2)) || return 1
  for arg in "${argv[@]:1}"; do
    [[ "${arg}" == "${SERVER_ENTRY}" ]] && return 0
  done
  return 1
}

process_exists() { [[ -d "/proc/$1" ]] && ! process_is_zombie "$1"; }

process_is_zombie() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" == Z ]]
}

# read_pid_file: sets PID (empty when there is no PID file) and PID_STATE: running, dead, foreign,
# garbage or none. Only "running" may ever be signalled.
read_pid_file() {
  PID=''
  PID_STATE=none
  [[ -e "${PID_FILE}" ]] || return 0
  [[ -r "${PID_FILE}" ]] || fail "${STATUS_UNKNOWN}" "cannot read the PID file ${PID_FILE}"
  local content=''
  IFS= read -r content <"${PID_FILE}" || true
  if [[ ! "${content}" =~ ^[1-9][0-9]{0,9}$ ]]; then
    PID_STATE=garbage
    return 0
  fi
  PID="${content}"
  if is_our_server "${PID}" && process_exists "${PID}"; then
    PID_STATE=running
  elif process_exists "${PID}"; then
    PID_STATE=foreign
  else
    PID_STATE=dead
  fi
}

stale_reason() {
  case "${PID_STATE}" in
  dead) printf 'process %s is gone' "${PID}" ;;
  foreign) printf 'process %s is not ec2-creator (PID reused; it is left alone)' "${PID}" ;;
  garbage) printf 'it does not hold a PID' ;;
  esac
}

remove_stale_pid_file() {
  say "removing stale PID file ${PID_FILE}: $(stale_reason)"
  rm -f -- "${PID_FILE}" || fail "${EXIT_PRIVILEGE}" "cannot remove ${PID_FILE}"
}

# Seconds since boot, and a process's start in seconds since boot, from /proc (no ps needed).
uptime_of() {
  local pid="$1" stat boot ticks
  stat="$(cat "/proc/${pid}/stat" 2>/dev/null)" || return 1
  local -a fields
  read -r -a fields <<<"${stat##*) }"
  # Field 22 (starttime) is the 20th after "pid (comm)".
  local start_ticks="${fields[19]:-}"
  [[ "${start_ticks}" =~ ^[0-9]+$ ]] || return 1
  read -r boot _ </proc/uptime
  ticks="$(getconf CLK_TCK 2>/dev/null || echo 100)"
  local seconds=$((${boot%.*} - start_ticks / ticks))
  ((seconds >= 0)) || seconds=0
  printf '%dd %02d:%02d:%02d' $((seconds / 86400)) $((seconds % 86400 / 3600)) $((seconds % 3600 / 60)) $((seconds % 60))
}

# http_get URL: prints the body and succeeds on a 2xx answer (curl when present, node otherwise).
http_get() {
  local url="$1"
  if command -v curl >/dev/null 2>&1; then
    curl --silent --show-error --fail --max-time 5 -- "${url}" 2>/dev/null
  else
    "${NODE_BIN}" -e '
      fetch(process.argv[1], { signal: AbortSignal.timeout(5000) })
        .then(async (r) => { process.stdout.write(await r.text()); process.exit(r.ok ? 0 : 1); })
        .catch(() => process.exit(1));' "${url}" 2>/dev/null
  fi
}

healthy() {
  local body
  body="$(http_get "${HEALTH_URL}")" || return 1
  [[ "${body}" =~ \"status\"[[:space:]]*:[[:space:]]*\"ok\" ]]
}

show_log_tail() {
  if [[ -s "${LOG_FILE}" ]]; then
    warn "last ${LINES} lines of ${LOG_FILE}:"
    tail -n "${LINES}" -- "${LOG_FILE}" >&2
  else
    warn "the log ${LOG_FILE} is empty"
  fi
}

# wait_for_exit PID SECONDS: polls until the process is gone; fails when it is still there.
wait_for_exit() {
  local pid="$1" deadline=$((SECONDS + $2))
  while process_exists "${pid}"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# terminate PID: SIGTERM, STOP_TIMEOUT_S of grace, then SIGKILL. Only ever called for our own server.
terminate() {
  local pid="$1"
  kill -TERM "${pid}" 2>/dev/null || true
  if ! wait_for_exit "${pid}" "${STOP_TIMEOUT_S}"; then
    warn "pid ${pid} still running ${STOP_TIMEOUT_S}s after SIGTERM: sending SIGKILL"
    if is_our_server "${pid}"; then kill -KILL "${pid}" 2>/dev/null || true; fi
    wait_for_exit "${pid}" 10 || return 1
  fi
}

# --- serialisation ---------------------------------------------------------------------------------

ensure_directory() {
  local dir="$1" what="$2"
  mkdir -p -- "${dir}" 2>/dev/null || fail "${EXIT_PRIVILEGE}" "cannot create the ${what} folder ${dir}"
  [[ -w "${dir}" ]] || fail "${EXIT_PRIVILEGE}" "the ${what} folder ${dir} is not writable"
}

# One manager at a time per PID file (start/stop/restart), when flock is available.
take_lock() {
  command -v flock >/dev/null 2>&1 || return 0
  ensure_directory "$(dirname -- "${PID_FILE}")" 'PID file'
  exec 9>>"${PID_FILE}.lock" || fail "${EXIT_PRIVILEGE}" "cannot open ${PID_FILE}.lock"
  flock -w $((START_TIMEOUT_S + STOP_TIMEOUT_S + 30)) 9 ||
    fail "${EXIT_FAILED}" "another ${SCRIPT_NAME} holds ${PID_FILE}.lock"
}

# --- actions ---------------------------------------------------------------------------------------

do_start() {
  [[ -f "${SERVER_ENTRY}" ]] || fail "${EXIT_NOT_INSTALLED}" "${SERVER_ENTRY} is missing: build the server first (npm ci && npm run build)"
  command -v "${NODE_BIN}" >/dev/null 2>&1 || fail "${EXIT_NOT_INSTALLED}" "node is not on PATH (NODE_BIN=${NODE_BIN})"
  command -v setsid >/dev/null 2>&1 || fail "${EXIT_NOT_INSTALLED}" 'setsid is missing (package util-linux)'

  read_pid_file
  case "${PID_STATE}" in
  running)
    say "ec2-creator is already running (pid ${PID})"
    return "${EXIT_OK}"
    ;;
  dead | foreign | garbage) remove_stale_pid_file ;;
  esac

  ensure_directory "$(dirname -- "${PID_FILE}")" 'PID file'
  ensure_directory "${LOG_DIR}" 'log'
  touch -- "${LOG_FILE}" 2>/dev/null || fail "${EXIT_PRIVILEGE}" "cannot write the log ${LOG_FILE}"
  printf '\n=== %s: starting ec2-creator on %s:%s ===\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${HOST}" "${PORT}" >>"${LOG_FILE}"

  local -a overrides=()
  if [[ "${MANAGE_SERVER_JENKINS_OVERRIDE}" == true ]]; then
    # Jenkins kills, when a build ends, every process whose environment carries the build's cookie.
    overrides=(JENKINS_NODE_COOKIE=dontKillMe BUILD_ID=dontKillMe JENKINS_SERVER_COOKIE=dontKillMe)
  fi
  PORT="${PORT}" HOST="${HOST}" env "${overrides[@]}" setsid -- "${NODE_BIN}" "${SERVER_ENTRY}" \
    </dev/null >>"${LOG_FILE}" 2>&1 9>&- &
  local pid=$!
  local tmp="${PID_FILE}.tmp.$$"
  if ! { printf '%s\n' "${pid}" >"${tmp}" && mv -f -- "${tmp}" "${PID_FILE}"; }; then
    kill -TERM "${pid}" 2>/dev/null || true
    fail "${EXIT_PRIVILEGE}" "cannot write the PID file ${PID_FILE}"
  fi

  local deadline=$((SECONDS + START_TIMEOUT_S))
  while true; do
    if ! process_exists "${pid}"; then
      wait "${pid}" 2>/dev/null || true
      warn "ec2-creator exited during start-up"
      break
    fi
    if healthy; then
      if is_our_server "${pid}"; then
        say "ec2-creator is running (pid ${pid}, ${HEALTH_URL%/health}, log ${LOG_FILE})"
        return "${EXIT_OK}"
      fi
    fi
    if ((SECONDS >= deadline)); then
      warn "ec2-creator did not answer ${HEALTH_URL} within ${START_TIMEOUT_S}s: stopping it"
      terminate "${pid}" || warn "pid ${pid} did not stop"
      break
    fi
    sleep 0.2
  done
  rm -f -- "${PID_FILE}"
  show_log_tail
  return "${EXIT_FAILED}"
}

do_stop() {
  read_pid_file
  case "${PID_STATE}" in
  none)
    say 'ec2-creator is not running'
    return "${EXIT_OK}"
    ;;
  dead | foreign | garbage)
    remove_stale_pid_file
    say 'ec2-creator is not running'
    return "${EXIT_OK}"
    ;;
  esac
  say "stopping ec2-creator (pid ${PID})"
  if ! terminate "${PID}"; then
    warn "pid ${PID} is still running after SIGKILL"
    return "${EXIT_FAILED}"
  fi
  rm -f -- "${PID_FILE}"
  say 'ec2-creator stopped'
}

do_status() {
  read_pid_file
  case "${PID_STATE}" in
  none)
    say "ec2-creator is not running (no PID file at ${PID_FILE})"
    return "${EXIT_NOT_RUNNING}"
    ;;
  dead | foreign | garbage)
    say "ec2-creator is dead but the PID file ${PID_FILE} exists: $(stale_reason)"
    return "${STATUS_DEAD_PID_FILE}"
    ;;
  esac
  local uptime health
  uptime="$(uptime_of "${PID}")" || uptime=unknown
  health="$(http_get "${HEALTH_URL}")" || health="no answer from ${HEALTH_URL}"
  say 'ec2-creator is running'
  printf '  pid:    %s\n  uptime: %s\n  url:    %s\n  health: %s\n  log:    %s\n' \
    "${PID}" "${uptime}" "${HEALTH_URL%/health}" "${health}" "${LOG_FILE}"
  return "${EXIT_OK}"
}

do_logs() {
  if [[ ! -e "${LOG_FILE}" ]]; then
    say "no log yet at ${LOG_FILE}"
    return "${EXIT_OK}"
  fi
  tail -n "${LINES}" -- "${LOG_FILE}"
}

main() {
  parse_arguments "$@"
  validate_options
  cd -- "${REPO_ROOT}"
  case "${ACTION}" in
  start) take_lock; do_start ;;
  stop) take_lock; do_stop ;;
  restart)
    take_lock
    do_stop || exit "$?"
    do_start
    ;;
  status) do_status ;;
  logs) do_logs ;;
  esac
}

main "$@"
