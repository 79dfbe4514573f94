#!/usr/bin/env bash
#
# Stop a running instance and print it once it is stopped.

# shellcheck source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/state_change.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/state_change.sh"

state_change_main stop stop-instances stopped 'pending running stopping' "$@"
