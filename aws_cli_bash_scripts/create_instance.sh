#!/usr/bin/env bash
#
# Launch one EC2 instance with a root volume of the requested size, tagged as managed by
# ec2-creator, and print it as one JSON document.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/tags.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/tags.sh"

usage() {
  cat <<EOF
Usage: ${SCRIPT_NAME} [options] NAME AMI INSTANCE_TYPE STORAGE_GB [SECURITY_GROUP_ID]

Launch one instance and print it as JSON (see README.md, "Instance document").

Arguments:
  NAME               Name tag: letters, digits, spaces and _ . : / = + - @; at most 255
  AMI                image id, e.g. ami-0abcdef1234567890
  INSTANCE_TYPE      e.g. t3.micro
  STORAGE_GB         root volume size in GiB (gp3), 1 to MAX_STORAGE_GB (default 30)
  SECURITY_GROUP_ID  optional, e.g. sg-0abcdef1234567890

Options (each also as --option=value):
  --name NAME, --ami AMI, --instance-type TYPE, --storage-gb N
                       the arguments above, by name
  --security-group-id SG
                       a security group (repeatable, at most 5 in all with SECURITY_GROUP_ID; a
                       group given twice is used once)
  --tag KEY=VALUE      a tag on the instance and its root volume (repeatable, at most 10; split at
                       the first '='). KEY 1-128, VALUE 0-256 characters: letters, digits, spaces
                       and _ . : / = + - @. Reserved keys are refused: Name, Owner, ManagedBy, and
                       any starting aws: or ec2-creator:
  --owner NAME         tag Owner=NAME on the instance and its root volume (1-256 tag characters)
  --expires-at TIME    tag ec2-creator:expires-at=TIME on the instance; TIME is ISO 8601 UTC, e.g.
                       2026-11-24T10:00:00Z or 2026-11-24T10:00:00.000Z
  --key-name NAME      key pair for SSH (default: \$KEY_NAME, else my_ec2_keypair)
  --client-token TOKEN idempotency token, 1-64 of A-Z a-z 0-9 . _ : -; the same token never
                       launches a second instance on AWS (default: a fresh one is generated)
  --root-device NAME   the AMI's root device name (e.g. /dev/xvda), for a caller that has read
                       the image already: the image is then not read again (one AWS call fewer)
  --no-precheck        skip the read that checks the key pair exists, for a caller that knows it
                       does (EC2 refuses a missing key anyway; one AWS call fewer)
  --wait               wait until the instance is running before printing it. EC2's reads lag behind
                       a launch: while it answers that the new id does not exist, it is asked again
                       after 1, 2, 4 ... seconds (at most the poll interval), within the wait's bound
  --wait-timeout S     with --wait, give up after S seconds (default 600)
  --poll-interval S    with --wait, seconds between checks (default 5)
  --progress-fd N      as soon as EC2 has launched the instance, write one JSON line to file
                       descriptor N (2 or 4-9, open): {"event":"launched","instance_id":...,
                       "client_token":...,"state":...,"launch_time":...}, for a caller that records
                       the instance before the wait is over
  -h, --help           print this help
  --                   end of options (for a NAME that starts with -)

Environment: KEY_NAME, MAX_STORAGE_GB, AWS_MAX_ATTEMPTS, AWS_CALL_TIMEOUT_S and the AWS CLI's own.
Exit codes: 0 ok, 1 other, 2 usage, 3 not found (AMI, key pair, group), 4 conflict (the client
            token was used for another launch), 5 throttled/unavailable, 6 credentials/permission,
            7 timed out, 8 missing aws/jq, 10 the instance became something other than running
            while waited for. Once EC2 has launched the instance, every error document names it
            ("instance_id" beside "code" and "message"): the launch happened.
EOF
}

readonly -a VALUE_OPTIONS=(
  --name --ami --instance-type --storage-gb --security-group-id --key-name --client-token --root-device
  --wait-timeout --poll-interval --tag --owner --expires-at --progress-fd
)
readonly -a FLAG_OPTIONS=(--no-precheck --wait)

# take_option NAME [VALUE]: sets main's locals (see lib/options.sh).
take_option() {
  case "$1" in
  --name) name="$2" ;;
  --ami) ami="$2" ;;
  --instance-type) instance_type="$2" ;;
  --storage-gb) storage_gb="$2" ;;
  --security-group-id) security_group_ids+=("$2") ;;
  --tag) tag_words+=("$2") ;;
  --owner) owner="$2"; owner_given=true ;;
  --expires-at) expires_at="$2" ;;
  --key-name) key_name="$2" ;;
  --client-token) client_token="$2" ;;
  --root-device) root_device="$2" ;;
  --wait-timeout) WAIT_TIMEOUT_S="$2" ;;
  --poll-interval) POLL_INTERVAL_S="$2" ;;
  --progress-fd) progress_fd="$2" ;;
  --no-precheck) precheck=false ;;
  --wait) wait=true ;;
  esac
}

# validate_user_tags: check main's tag_words (see --tag) and set USER_TAGS to KEY VALUE pairs.
validate_user_tags() {
  USER_TAGS=()
  ((${#tag_words[@]} <= MAX_USER_TAGS)) ||
    usage_error "at most ${MAX_USER_TAGS} --tag options are allowed, got ${#tag_words[@]}"
  local word
  local -A seen=()
  for word in "${tag_words[@]}"; do
    split_tag "${word}" --tag
    validate_tag_key "${TAG_KEY}"
    refuse_key_for_create "${TAG_KEY}"
    validate_tag_value "${TAG_KEY}" "${TAG_VALUE}"
    [[ -z "${seen["${TAG_KEY}"]+set}" ]] || usage_error "the tag key ${TAG_KEY} was given more than once"
    seen["${TAG_KEY}"]=1
    USER_TAGS+=("${TAG_KEY}" "${TAG_VALUE}")
  done
}

# validate_progress_fd N: a descriptor that is open and is neither the result's (1) nor ours (3).
validate_progress_fd() {
  [[ "$1" =~ ^[2-9]$ && "$1" != 3 ]] || usage_error "--progress-fd must be 2 or 4 to 9, got '$1'"
  { true >&"$1"; } 2>/dev/null || usage_error "--progress-fd $1: file descriptor $1 is not open"
}

main() {
  local name='' ami='' instance_type='' storage_gb='' security_group_id=''
  local key_name="${KEY_NAME:-my_ec2_keypair}" client_token='' wait=false
  local root_device='' precheck=true owner='' owner_given=false expires_at='' progress_fd=''
  local -a security_group_ids=() tag_words=()
  parse_options "$@"
  local -a positional=("${POSITIONAL_ARGUMENTS[@]}")

  if ((${#positional[@]} > 5)); then
    usage_error "expected at most 5 arguments, got ${#positional[@]}"
  fi
  # A positional argument fills only what no option named.
  local -a fields=(name ami instance_type storage_gb security_group_id)
  local i
  for i in "${!positional[@]}"; do
    local -n field="${fields[i]}"
    [[ -z "${field}" ]] || usage_error "${fields[i]} was given both as an option and as an argument"
    field="${positional[i]}"
    unset -n field
  done

  [[ -n "${name}" ]] || usage_error 'NAME is required'
  [[ -n "${ami}" ]] || usage_error 'AMI is required'
  [[ -n "${instance_type}" ]] || usage_error 'INSTANCE_TYPE is required'
  [[ -n "${storage_gb}" ]] || usage_error 'STORAGE_GB is required'
  local max_storage_gb="${MAX_STORAGE_GB:-30}"
  [[ "${max_storage_gb}" =~ ^[1-9][0-9]{0,4}$ ]] ||
    usage_error "MAX_STORAGE_GB must be a whole number from 1 to 99999, got '${max_storage_gb}'"
  validate_name "${name}"
  validate_ami_id "${ami}"
  validate_instance_type "${instance_type}"
  validate_integer STORAGE_GB "${storage_gb}" 1 "${max_storage_gb}"
  storage_gb=$((10#${storage_gb}))
  [[ -z "${security_group_id}" ]] || security_group_ids+=("${security_group_id}")
  local -a groups=()
  local group
  for group in "${security_group_ids[@]}"; do
    validate_security_group_id "${group}"
    if [[ " ${groups[*]} " == *" ${group} "* ]]; then
      err "security group ${group} was given more than once; using it once"
      continue
    fi
    groups+=("${group}")
  done
  ((${#groups[@]} <= 5)) || usage_error "at most 5 security groups may be given, got ${#groups[@]}"
  validate_user_tags
  if [[ "${owner_given}" == true ]]; then
    validate_tag_text 'the owner' "${owner}" 1 256
    [[ ! "${owner}" =~ ^[[:space:]]+$ ]] || usage_error 'the owner must not be blank'
  fi
  [[ -z "${expires_at}" ]] || validate_expires_at "${expires_at}"
  validate_key_name "${key_name}"
  [[ -z "${root_device}" ]] || validate_device_name "${root_device}"
  if [[ -z "${client_token}" ]]; then
    client_token="$(</proc/sys/kernel/random/uuid)"
  fi
  validate_client_token "${client_token}"
  validate_wait_options
  [[ -z "${progress_fd}" ]] || validate_progress_fd "${progress_fd}"
  require_tools

  # Checked here rather than left to run-instances: the error is clearer, and an emulator that
  # accepts any key or image cannot make us launch with one that does not exist.
  if [[ "${precheck}" == true ]]; then
    aws_ec2 describe-key-pairs --key-names="${key_name}" >/dev/null
  fi
  if [[ -z "${root_device}" ]]; then
    local image
    image="$(aws_ec2 describe-images --image-ids="${ami}")"
    if [[ -z "$(jq -r '.Images[0].ImageId // empty' <<<"${image}")" ]]; then
      fail InvalidAMIID.NotFound "${EXIT_NOT_FOUND}" "the image id '${ami}' does not exist"
    fi
    root_device="$(jq -r '.Images[0].RootDeviceName // empty' <<<"${image}")"
    # Sizing the image's own root device resizes the root volume; any other name would add a disk.
    [[ -n "${root_device}" ]] || root_device=/dev/xvda
  fi

  local block_devices tags
  block_devices="$(jq -cn --arg device "${root_device}" --argjson size "${storage_gb}" \
    '[{DeviceName: $device, Ebs: {VolumeSize: $size, VolumeType: "gp3", DeleteOnTermination: true}}]')"
  # The volume carries the owner and the user tags too: it is billed apart from the instance.
  local -a common_tags=(Name "${name}" "${MANAGED_TAG_KEY}" "${MANAGED_TAG_VALUE}")
  [[ "${owner_given}" != true ]] || common_tags+=("${OWNER_TAG_KEY}" "${owner}")
  common_tags+=("${USER_TAGS[@]}")
  local -a instance_only=("${CLIENT_TOKEN_TAG_KEY}" "${client_token}")
  [[ -z "${expires_at}" ]] || instance_only+=("${EXPIRES_AT_TAG_KEY}" "${expires_at}")
  tags="$(jq -cn --argjson common "$(tags_json "${common_tags[@]}")" \
    --argjson instance_only "$(tags_json "${instance_only[@]}")" '
    [{ResourceType: "instance", Tags: ($common + $instance_only)}, {ResourceType: "volume", Tags: $common}]')"

  local -a launch=(
    --image-id="${ami}" --instance-type="${instance_type}" --count=1
    --key-name="${key_name}" --client-token="${client_token}"
    --block-device-mappings="${block_devices}" --tag-specifications="${tags}"
  )
  if ((${#groups[@]} > 0)); then
    # A list option takes its values as separate words (--opt=a b would leave b to the CLI as a
    # stray argument); each id was checked above to be sg- and hex digits, so none reads as an option.
    launch+=(--security-group-ids "${groups[@]}")
  fi
  err "launching ${instance_type} from ${ami} with a ${storage_gb} GiB root volume (client token ${client_token})"
  local launched instance_id
  launched="$(aws_ec2 run-instances "${launch[@]}")"
  instance_id="$(jq -r '.Instances[0].InstanceId // empty' <<<"${launched}")"
  [[ -n "${instance_id}" ]] ||
    fail InvalidAwsOutput "${EXIT_OTHER}" 'run-instances answered without an instance id'
  LAUNCHED_INSTANCE_ID="${instance_id}"
  err "launched ${instance_id}"
  if [[ -n "${progress_fd}" ]]; then
    jq -c --arg token "${client_token}" '.Instances[0]
      | {event: "launched", instance_id: .InstanceId, client_token: $token, state: .State.Name, launch_time: .LaunchTime}' \
      <<<"${launched}" >&"${progress_fd}"
  fi

  # The root volume is the size asked for (EC2 refuses a size the image does not fit), so it is not
  # read back.
  READ_STORAGE=false
  local document
  if [[ "${wait}" == true ]]; then
    document="$(wait_for_state "${instance_id}" running "${WAIT_TIMEOUT_S}" "${POLL_INTERVAL_S}" pending --just-launched)"
  else
    # run-instances already describes the instance; describing it again right away can answer
    # NotFound on AWS, whose reads lag behind a launch by a few seconds.
    document="$(document_of "$(jq '{Reservations: [.]}' <<<"${launched}")")"
  fi
  jq --argjson requested "${storage_gb}" '.storage_gb //= $requested' <<<"${document}"
}

main "$@"
