#!/usr/bin/env bash
#
# Check that an EC2 key pair exists; optionally create it and keep its private key in a file.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
Usage: ${SCRIPT_NAME} [options] NAME

Check that the key pair NAME exists and print it:
  {"name","key_pair_id","fingerprint","created","private_key_file"}

Options (each also as --option=value):
  --create                 create the key pair when it is missing
  --private-key-file PATH  where --create writes the private key, mode 0400
                           (default ~/.ssh/NAME.pem); an existing file is never overwritten
  -h, --help               print this help

Exit codes: 0 ok, 1 other, 2 usage, 3 not found (without --create), 4 the key file exists
            already, 5 throttled/unavailable, 6 credentials/permission, 7 timed out,
            8 missing aws/jq.
USAGE
}

key_pair_document() {
  jq --argjson created "$1" --arg file "$2" '.KeyPairs[0] // . | {
      name: .KeyName,
      key_pair_id: (.KeyPairId // null),
      fingerprint: (.KeyFingerprint // null),
      created: $created,
      private_key_file: (if $file == "" then null else $file end)
    }'
}

readonly -a VALUE_OPTIONS=(--private-key-file)
readonly -a FLAG_OPTIONS=(--create)

# take_option NAME [VALUE]: sets main's locals (see lib/options.sh).
take_option() {
  case "$1" in
  --create) create=true ;;
  --private-key-file) key_file="$2" ;;
  esac
}

main() {
  local create=false key_file=''
  parse_options "$@"
  one_positional NAME "${POSITIONAL_ARGUMENTS[@]}"
  local name="${ARGUMENT}"
  validate_key_name "${name}"
  [[ -n "${key_file}" ]] || key_file="${HOME}/.ssh/${name}.pem"
  require_tools

  # One call; its error document is kept (fd 3 into the variable) and passed on unless the key pair
  # is merely missing, which --create remedies.
  local existing status=0
  existing="$(aws_ec2 describe-key-pairs --key-names="${name}" 2>/dev/null 3>&1)" || status=$?
  if ((status == 0)); then
    key_pair_document false '' <<<"${existing}"
    return 0
  fi
  if ((status != EXIT_NOT_FOUND)); then
    err "$(jq -r '.error.message' <<<"${existing}")"
    printf '%s\n' "${existing}" >&3
    exit "${status}"
  fi
  if [[ "${create}" != true ]]; then
    fail InvalidKeyPair.NotFound "${EXIT_NOT_FOUND}" \
      "the key pair '${name}' does not exist; run again with --create to make it"
  fi
  if [[ -e "${key_file}" ]]; then
    fail KeyFileExists "${EXIT_CONFLICT}" \
      "${key_file} exists already; move it away or pass --private-key-file"
  fi
  local key_dir
  key_dir="$(dirname -- "${key_file}")"
  [[ -d "${key_dir}" ]] || (umask 077 && mkdir -p -- "${key_dir}")

  err "creating key pair ${name}; private key in ${key_file}"
  local created
  created="$(aws_ec2 create-key-pair --key-name="${name}")"
  # The key material never passes through stdout or a file anyone else could read.
  (umask 077 && jq -r '.KeyMaterial' <<<"${created}" >"${key_file}")
  chmod 0400 -- "${key_file}"
  key_pair_document true "${key_file}" <<<"${created}"
}

main "$@"
