#!/usr/bin/env bash
# reap-when-gone.sh PID VARIABLE VALUE [FOLDER]: once process PID has ended, SIGKILL every process whose
# environment holds VARIABLE=VALUE and remove FOLDER, and every absolute path listed in FOLDER.also-remove
# (one a line: folders that must live elsewhere, such as a PostgreSQL data folder its server user can
# reach). The test runner starts it detached, so a run that is killed (even by SIGKILL) leaves no server,
# emulator, script or folder behind.
set -euo pipefail
readonly parent="$1" variable="$2" value="$3" folder="${4:-}"

while kill -0 "${parent}" 2>/dev/null; do
  sleep 1
done
for environ in /proc/[0-9]*/environ; do
  pid="${environ#/proc/}"
  pid="${pid%/environ}"
  [[ "${pid}" != "$$" ]] || continue
  if tr '\0' '\n' 2>/dev/null <"${environ}" | grep -qxF -- "${variable}=${value}"; then
    kill -KILL "${pid}" 2>/dev/null || true
  fi
done
if [[ -n "${folder}" ]]; then
  rm -rf -- "${folder}"
  if [[ -f "${folder}.also-remove" ]]; then
    while IFS= read -r extra; do
      [[ "${extra}" != /* ]] || rm -rf -- "${extra}"
    done <"${folder}.also-remove"
    rm -f -- "${folder}.also-remove"
  fi
fi
