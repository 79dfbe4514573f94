#!/usr/bin/env bash
#
# Print what the service needs to know about an AMI: that it exists, its architecture and name.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
Usage: ${SCRIPT_NAME} AMI_ID

Print the image as JSON:
  {"id","name","architecture","state","root_device_name","owner_id","platform","description"}

Options:
  -h, --help   print this help

Exit codes: 0 ok, 1 other, 2 usage, 3 not found, 5 throttled/unavailable,
            6 credentials/permission, 7 timed out, 8 missing aws/jq.
USAGE
}

readonly -a VALUE_OPTIONS=()
readonly -a FLAG_OPTIONS=()

# No options beyond -h: parse_options never calls this.
take_option() { :; }

main() {
  parse_options "$@"
  one_positional AMI_ID "${POSITIONAL_ARGUMENTS[@]}"
  local ami="${ARGUMENT}" images
  validate_ami_id "${ami}"
  require_tools
  images="$(aws_ec2 describe-images --image-ids="${ami}")"
  if [[ "$(jq '.Images | length' <<<"${images}")" == 0 ]]; then
    fail InvalidAMIID.NotFound "${EXIT_NOT_FOUND}" "the image id '${ami}' does not exist"
  fi
  jq '.Images[0] | {
      id: .ImageId,
      name: (.Name // null),
      architecture: (.Architecture // null),
      state: (.State // null),
      root_device_name: (.RootDeviceName // null),
      owner_id: (.OwnerId // null),
      platform: (.PlatformDetails // .Platform // null),
      description: (.Description // null)
    }' <<<"${images}"
}

main "$@"
