#!/usr/bin/env bash
#
# Start a stopped instance and print it once it is running.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/state_change.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/state_change.sh"

# A stopping instance may still be on its way down when start is accepted; it passes through.
state_change_main start start-instances running 'pending stopping stopped' "$@"
