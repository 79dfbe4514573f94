#!/usr/bin/env bash
#
# Start, stop and inspect the ec2-creator server (the built dist/app/server.js), following the LSB
# init-script conventions. The server runs detached in its own session, with Jenkins' process-tree killer
# told to spare it, so a Jenkins job can start it and end without taking it down.
set -euo pipefail
set +m # no job control: a background child stays in our process group, so setsid needs no fork
# The log line count was once read from LINES, a name bash owns: in a terminal it resets LINES to the
# terminal's height after every command. LOG_LINES replaces it; the old name is still read from the
# environment, here, before any command has run.
readonly LINES_FROM_ENVIRONMENT="${LINES:-}"

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
  status   print PID, uptime and the health answer (at the address the server was started with)
  logs     print the last lines of the log

Options (each also as --option=value, and from the environment variable named after it):
  --port PORT            PORT             port the server listens on (default 8000)
  --host HOST            HOST             address it binds (default 127.0.0.1)
  --pid-file PATH        PID_FILE         PID file (default ./run/ec2-creator.pid)
  --log-dir DIR          LOG_DIR          log folder (default ./logs); the log is DIR/ec2-creator.log
  --start-timeout SEC    START_TIMEOUT_S  how long start waits for /health (default 30)
  --stop-timeout SEC     STOP_TIMEOUT_S   how long stop waits after SIGTERM before SIGKILL (default 15)
  -n, --lines N          LOG_LINES        log lines shown by logs and after a failed start (default 50;
                                          LINES, its former name, is read when LOG_LINES is unset)
  -h, --help             print this help
Relative paths are taken from the repository root. NODE_BIN names the node executable (default node).
start records the host and port beside the PID file (PID_FILE.address); status and stop use those,
whatever HOST and PORT say when they run. start and restart use the options.
Every other variable (DATABASE_URL, SCRIPTS_DIR, KEY_NAME, AWS_*, ...) passes through to the server.
The server gets JENKINS_NODE_COOKIE, BUILD_ID and JENKINS_SERVER_COOKIE set to dontKillMe, so that
Jenkins does not kill it when the build that started it ends; MANAGE_SERVER_JENKINS_OVERRIDE=false
leaves the caller's values in place.

Exit codes (LSB):
  status: 0 running, 1 dead but the PID file exists, 3 not running, 4 unknown (PID file unreadable)
  other:  0 success (also start when running, stop when stopped), 1 failed (e.g. the server did not
          become healthy, or another process holds the port), 2 usage, 4 no permission (PID file or
          log folder not writable), 5 not installed (not built: run npm run build; node or setsid
          missing), 6 bad option value
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
LOG_LINES="${LOG_LINES:-${LINES_FROM_ENVIRONMENT:-50}}"
NODE_BIN="${NODE_BIN:-node}"
MANAGE_SERVER_JENKINS_OVERRIDE="${MANAGE_SERVER_JENKINS_OVERRIDE:-true}"

# The one option parser of the repository's scripts, beside which this one lives.
readonly OPTIONS_LIB="${REPO_ROOT}/aws_cli_bash_scripts/lib/options.sh"
[[ -r "${OPTIONS_LIB}" ]] || fail "${EXIT_NOT_INSTALLED}" "${OPTIONS_LIB} is missing: run ${SCRIPT_NAME} from a complete checkout"
# shellcheck source=../aws_cli_bash_scripts/lib/options.sh
source "${OPTIONS_LIB}"

readonly -a VALUE_OPTIONS=(--port --host --pid-file --log-dir --start-timeout --stop-timeout -n --lines)
readonly -a FLAG_OPTIONS=()

take_option() {
  case "$1" in
  --port) PORT="$2" ;;
  --host) HOST="$2" ;;
  --pid-file) PID_FILE="$2" ;;
  --log-dir) LOG_DIR="$2" ;;
  --start-timeout) START_TIMEOUT_S="$2" ;;
  --stop-timeout) STOP_TIMEOUT_S="$2" ;;
  -n | --lines) LOG_LINES="$2" ;;
  esac
}

parse_arguments() {
  parse_options "$@"
  ACTION=''
  local argument
  for argument in "${POSITIONAL_ARGUMENTS[@]}"; do
    [[ -z "${ACTION}" ]] || usage_error "expected one action, got '${ACTION}' and '${argument}'"
    ACTION="${argument}"
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
  for name in PORT START_TIMEOUT_S STOP_TIMEOUT_S LOG_LINES; do
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
  ADDRESS_FILE="${PID_FILE}.address"
  HEALTH_URL="$(health_url "${HOST}" "${PORT}")"
}

# health_url HOST PORT: where the server bound to HOST:PORT answers GET /health.
health_url() {
  local host="$1" port="$2"
  case "${host}" in
  0.0.0.0 | '') host=127.0.0.1 ;;
  :: | '[::]') host='[::1]' ;;
  *:*) [[ "${host}" == \[* ]] || host="[${host}]" ;;
  esac
  printf 'http://%s:%s/health' "${host}" "${port}"
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

# listens_on PID PORT: the process holds a TCP socket listening on PORT (any address, IPv4 or IPv6).
# Sockets are matched by inode: /proc/net/tcp* lists the listening ones, /proc/PID/fd links to
# "socket:[INODE]". Needs nothing beyond /proc and readlink.
listens_on() {
  local pid="$1" port_hex table address state inode link
  printf -v port_hex '%04X' "$2"
  local -A listening=()
  for table in /proc/net/tcp /proc/net/tcp6; do
    [[ -r "${table}" ]] || continue
    # Fields: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    while read -r _ address _ state _ _ _ _ _ inode _; do
      if [[ "${state}" == 0A && "${address##*:}" == "${port_hex}" ]]; then
        listening["${inode}"]=1
      fi
    done <"${table}"
  done
  ((${#listening[@]} > 0)) || return 1
  local -a fds=("/proc/${pid}/fd/"*)
  [[ -e "${fds[0]}" ]] || return 1
  while IFS= read -r link; do
    if [[ "${link}" =~ ^socket:\[([0-9]+)\]$ && -n "${listening[${BASH_REMATCH[1]}]:-}" ]]; then
      return 0
    fi
  done < <(readlink -- "${fds[@]}" 2>/dev/null || true)
  return 1
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

remove_pid_file() {
  rm -f -- "${PID_FILE}" "${ADDRESS_FILE}"
}

remove_stale_pid_file() {
  say "removing stale PID file ${PID_FILE}: $(stale_reason)"
  remove_pid_file || fail "${EXIT_PRIVILEGE}" "cannot remove ${PID_FILE}"
}

# write_pid_file PID: the address first, then the PID (each replaced whole), so that whoever finds the
# PID file finds the address it goes with.
write_pid_file() {
  local pid="$1" tmp="${PID_FILE}.tmp.$$"
  printf 'host=%s\nport=%s\n' "${HOST}" "${PORT}" >"${tmp}" && mv -f -- "${tmp}" "${ADDRESS_FILE}" &&
    printf '%s\n' "${pid}" >"${tmp}" && mv -f -- "${tmp}" "${PID_FILE}"
}

# recorded_health_url: where the server in the PID file answers, from the address start recorded
# beside it; the options' address when none was recorded (a server started by an older manager).
recorded_health_url() {
  local line host='' port=''
  if [[ -r "${ADDRESS_FILE}" ]]; then
    while IFS= read -r line; do
      case "${line}" in
      host=*) host="${line#host=}" ;;
      port=*) port="${line#port=}" ;;
      esac
    done <"${ADDRESS_FILE}"
  fi
  if [[ -n "${host}" && ! "${host}" =~ [[:space:]/] && "${port}" =~ ^[1-9][0-9]{0,4}$ ]] && ((port <= 65535)); then
    health_url "${host}" "${port}"
  else
    printf '%s' "${HEALTH_URL}"
  fi
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
    warn "last ${LOG_LINES} lines of ${LOG_FILE}:"
    tail -n "${LOG_LINES}" -- "${LOG_FILE}" >&2
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
    local url
    url="$(recorded_health_url)"
    say "ec2-creator is already running (pid ${PID}, ${url%/health})"
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
  if ! write_pid_file "${pid}"; then
    kill -TERM "${pid}" 2>/dev/null || true
    rm -f -- "${PID_FILE}.tmp.$$"
    fail "${EXIT_PRIVILEGE}" "cannot write the PID file ${PID_FILE}"
  fi

  # Healthy is not enough: another server on the port answers /health just as well, while ours dies
  # of EADDRINUSE. Only an answer while the process we launched holds the listening socket counts.
  local deadline=$((SECONDS + START_TIMEOUT_S))
  while true; do
    if ! process_exists "${pid}"; then
      wait "${pid}" 2>/dev/null || true
      warn "ec2-creator exited during start-up"
      break
    fi
    if listens_on "${pid}" "${PORT}" && is_our_server "${pid}" && healthy; then
      say "ec2-creator is running (pid ${pid}, ${HEALTH_URL%/health}, log ${LOG_FILE})"
      return "${EXIT_OK}"
    fi
    if ((SECONDS >= deadline)); then
      warn "ec2-creator was not answering ${HEALTH_URL} from a socket of its own within ${START_TIMEOUT_S}s: stopping it"
      terminate "${pid}" || warn "pid ${pid} did not stop"
      break
    fi
    sleep 0.2
  done
  remove_pid_file
  if healthy; then
    warn "another process answers ${HEALTH_URL}: ec2-creator needs port ${PORT} to itself"
  fi
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
  local url
  url="$(recorded_health_url)"
  say "stopping ec2-creator (pid ${PID}, ${url%/health})"
  if ! terminate "${PID}"; then
    warn "pid ${PID} is still running after SIGKILL"
    return "${EXIT_FAILED}"
  fi
  remove_pid_file
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
  local uptime health url
  uptime="$(uptime_of "${PID}")" || uptime=unknown
  url="$(recorded_health_url)"
  health="$(http_get "${url}")" || health="no answer from ${url}"
  say 'ec2-creator is running'
  printf '  pid:    %s\n  uptime: %s\n  url:    %s\n  health: %s\n  log:    %s\n' \
    "${PID}" "${uptime}" "${url%/health}" "${health}" "${LOG_FILE}"
  return "${EXIT_OK}"
}

do_logs() {
  if [[ ! -e "${LOG_FILE}" ]]; then
    say "no log yet at ${LOG_FILE}"
    return "${EXIT_OK}"
  fi
  tail -n "${LOG_LINES}" -- "${LOG_FILE}"
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
