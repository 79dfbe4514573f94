#!/usr/bin/env bash
#
# Jenkins job "manage": run scripts/manage_server.sh with the ACTION parameter (status, start, stop,
# restart), checked first. start and restart install (npm ci, cached) and build this checkout first,
# since the server runs from its dist/. Every other variable (PORT, HOST, PID_FILE, LOG_DIR, DATABASE_URL, ...)
# passes through. Exit codes: those of manage_server.sh (status: 0 running, 1 dead, 3 not running),
# 2 for a bad ACTION.
set -euo pipefail

action="${ACTION:-}"
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
