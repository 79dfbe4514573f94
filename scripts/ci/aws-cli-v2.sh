#!/usr/bin/env bash
#
# Unpack AWS CLI v2 from Debian's awscli package, with the Python packages it needs that the machine
# lacks, into the tools folder, and run a command with its `aws` first on PATH (or print that folder).
# Nothing is installed: the machine's own `aws` (v1 here) stays what every other step runs, since a v2
# call costs more CPU.
# The packages are unpacked once (apt-get download, dpkg -x) and reused while Debian serves that version.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") [COMMAND [ARG...]]

Unpack Debian's awscli (AWS CLI v2) into the tools folder. Without a COMMAND, print the folder that
holds its aws; with one, run COMMAND with that aws first on PATH.
Environment:
  EC2_CREATOR_TOOLS_DIR  where it is unpacked and reused (default: .tools in the checkout)
Exit codes: COMMAND's own status; without one 0; 2 when v2 could not be had (no apt, no awscli
package, no /usr/bin/python3).
USAGE
}

case "${1:-}" in
-h | --help) usage; exit 0 ;;
esac

die() {
  echo "aws-cli-v2: $*" >&2
  exit 2
}

root="$(cd "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="${EC2_CREATOR_TOOLS_DIR:-${root}/.tools}"
# Debian's packages are built for Debian's Python, not for whichever python3 comes first on PATH.
python=/usr/bin/python3
for tool in apt-get apt-cache dpkg "${python}"; do
  command -v "${tool}" >/dev/null 2>&1 || die "${tool} is not there (Debian's awscli needs apt and Debian's python3)"
done

candidate() { apt-cache policy awscli 2>/dev/null | sed -n 's/^ *Candidate: //p'; }
version="$(candidate)"
if [[ -z "${version}" || "${version}" == '(none)' ]] && [[ "$(id -u)" == 0 ]]; then
  apt-get update -qq
  version="$(candidate)"
fi
[[ -n "${version}" && "${version}" != '(none)' ]] || die "apt knows no awscli package (apt-get update, as root, may help)"

dest="${tools}/awscli-${version}"
if [[ ! -x "${dest}/bin/aws" ]]; then
  mkdir -p -- "${tools}"
  # Unpacked beside its final place and moved there whole, so an interrupted run leaves nothing that a
  # later one would take for complete.
  partial="$(mktemp -d "${dest}.partial-XXXXXX")"
  trap 'rm -rf -- "${partial}"' EXIT
  # What an install would add: awscli itself and those of its dependencies the machine does not have.
  mapfile -t packages < <(apt-get -s --no-install-recommends install awscli 2>/dev/null |
    awk '$1 == "Inst" && $2 != "awscli" { print $2 }')
  mkdir "${partial}/debs" "${partial}/root" "${partial}/bin"
  # Its output only on failure: as root, apt warns each time that it downloads without its sandbox user.
  if ! (cd "${partial}/debs" && apt-get download -qq awscli "${packages[@]}") >"${partial}/download.log" 2>&1; then
    cat -- "${partial}/download.log" >&2
    die "apt-get download awscli ${packages[*]} failed"
  fi
  for deb in "${partial}"/debs/*.deb; do
    dpkg -x "${deb}" "${partial}/root"
  done
  rm -rf -- "${partial}/debs"
  # Only these packages' modules on the path, whatever the caller's PYTHONPATH or PYTHONHOME say, and no
  # user site-packages (-s): a v1 botocore there must not be mixed into v2.
  cat >"${partial}/bin/aws" <<WRAPPER
#!/bin/sh
exec env -u PYTHONHOME PYTHONPATH='${dest}/root/usr/lib/python3/dist-packages' '${python}' -s '${dest}/root/usr/bin/aws' "\$@"
WRAPPER
  chmod +x "${partial}/bin/aws"
  rm -rf -- "${dest}"
  mkdir "${dest}"
  mv -- "${partial}/root" "${partial}/bin" "${dest}/"
fi

reported="$("${dest}/bin/aws" --version 2>&1)" || die "${dest}/bin/aws --version failed: ${reported}"
[[ "${reported}" == aws-cli/2.* ]] || die "${dest}/bin/aws is not AWS CLI v2: ${reported}"
if (($# == 0)); then
  echo "${dest}/bin"
  exit 0
fi
echo "aws-cli-v2: ${reported}"
PATH="${dest}/bin:${PATH}" exec "$@"
