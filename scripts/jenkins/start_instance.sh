#!/usr/bin/env bash
#
# Jenkins job "start": start an instance through the ec2-creator API (POST /instances/ID/start).
#
# Parameters (environment): INSTANCE_ID; API_URL and API_TOKEN from the Jenkins credential. The answer
# is written to $RESULTS_DIR/instance-start.json. Exit codes as create_instance.sh.

# shellcheck source=lib/api.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/api.sh"

main() {
  change_state_job start
}

main "$@"
