#!/usr/bin/env bash
#
# Jenkins job "manage": run scripts/manage_server.sh with the ACTION parameter (status, start, stop,
# restart), checked first; unset means status, which changes nothing (the job's first build runs before
# Jenkins has its parameters). start and restart install (npm ci, cached) and build this checkout first,
# since the server runs from its dist/. Every other variable (PORT, HOST, PID_FILE, LOG_DIR, DATABASE_URL,
# ...) passes through. Exit codes: those of manage_server.sh (status: 0 running, 1 dead, 3 not running),
# 2 for a bad ACTION.
#
# manage.sh --credential api-tokens|aws|smtp|webhook prints the id of the Jenkins credential the job binds for that
# secret, or nothing when it binds none. Only start and restart (ACTION) get secrets: they alone start a
# server. It is decided here, on the agent, because the settings that decide it live in the agent's
# environment, where the Jenkinsfile cannot look:
#   api-tokens  ec2-creator-api-tokens (Secret text: the API_TOKENS value)
#   aws         EC2_CREATOR_AWS_CREDENTIALS (default ec2-creator-aws, Username with password: access key
#               id and secret access key); "none" binds nothing, for an instance role or AWS_PROFILE
#   smtp        ec2-creator-smtp (Secret text: SMTP_PASSWORD), when SMTP_USER is set; the server wants
#               the password with a login, and only then
#   webhook     ec2-creator-webhook (Secret text: WEBHOOK_SECRET), when WEBHOOK_URLS is set
set -euo pipefail

credential() {
  local id=''
  case "${1:-}" in
  api-tokens) id=ec2-creator-api-tokens ;;
  aws)
    id="${EC2_CREATOR_AWS_CREDENTIALS:-ec2-creator-aws}"
    [[ "${id}" != none ]] || id=''
    ;;
  smtp) [[ -z "${SMTP_USER:-}" ]] || id=ec2-creator-smtp ;;
  webhook) [[ -z "${WEBHOOK_URLS:-}" ]] || id=ec2-creator-webhook ;;
  *)
    echo "ERROR: --credential takes api-tokens, aws, smtp or webhook; got '${1:-}'" >&2
    exit 2
    ;;
  esac
  if [[ -n "${id}" && ! "${id}" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ ]]; then
    echo "ERROR: EC2_CREATOR_AWS_CREDENTIALS '${id}' is neither a credential id (letters, digits, . _ -) nor none" >&2
    exit 2
  fi
  case "${ACTION:-}" in
  start | restart) printf '%s\n' "${id}" ;;
  *) printf '\n' ;;
  esac
}

if [[ "${1:-}" == --credential ]]; then
  credential "${2:-}"
  exit 0
fi

action="${ACTION-status}"
case "${action}" in
status | start | stop | restart) ;;
*)
  echo "ERROR: ACTION must be one of status, start, stop, restart; got '${action}'" >&2
  exit 2
  ;;
esac
here="$(dirname -- "${BASH_SOURCE[0]}")"
if [[ "${action}" == start || "${action}" == restart ]]; then
  bash "${here}/deployment.sh" install
  bash "${here}/deployment.sh" build
fi
exec bash "${here}/../manage_server.sh" "${action}"
