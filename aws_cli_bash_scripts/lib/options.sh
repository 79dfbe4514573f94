# shellcheck shell=bash
# The declarations parse_options reads, and the usage and usage_error it calls, belong to the script.
# shellcheck disable=SC2154
#
# The one option parser of the EC2 scripts and of scripts/manage_server.sh, so that every script
# accepts options the same way. Sourced, never run.
#
# A script declares, before it calls parse_options:
#   VALUE_OPTIONS    options that take a value: NAME VALUE, or NAME=VALUE for a --long one
#   FLAG_OPTIONS     options that take none (NAME=VALUE is refused as an unknown option)
#   TAKES_ARGUMENTS  optional; false for a script that takes no arguments at all
# and defines:
#   take_option NAME [VALUE]  record one option; NAME is spelled as declared. It runs inside the
#                             caller's parse_options call, so it may set the caller's locals (all
#                             but parsed_*, which parse_options' own locals would hide).
#   usage                     print the help
#   usage_error MESSAGE...    report a usage error and exit

# option_value NAME "$@": the value of an option given as NAME=value or NAME value. Sets
# OPTION_VALUE, and OPTION_SHIFT to how many words the option used.
option_value() {
  local name="$1" word="$2"
  if [[ "${word}" == "${name}="* ]]; then
    OPTION_VALUE="${word#"${name}="}"
    OPTION_SHIFT=1
  elif [[ $# -ge 3 ]]; then
    OPTION_VALUE="$3"
    OPTION_SHIFT=2
  else
    usage_error "option ${name} needs a value"
  fi
}

# is_one_of WORD CANDIDATE...
is_one_of() {
  local word="$1" candidate
  shift
  for candidate in "$@"; do
    [[ "${word}" != "${candidate}" ]] || return 0
  done
  return 1
}

# parse_options "$@": walk the words, calling take_option for each declared option. -h and --help
# print the help and exit 0; after --, every word is an argument, even one that starts with -.
# Sets POSITIONAL_ARGUMENTS to the arguments, in order.
parse_options() {
  POSITIONAL_ARGUMENTS=()
  local parsed_word parsed_name
  while (($# > 0)); do
    parsed_word="$1"
    parsed_name="${parsed_word}"
    # Only a long option can carry its value after '=': -n=3 is no spelling of -n 3.
    [[ "${parsed_word}" != --*=* ]] || parsed_name="${parsed_word%%=*}"
    if [[ "${parsed_word}" == -h || "${parsed_word}" == --help ]]; then
      usage
      exit "${EXIT_OK}"
    elif is_one_of "${parsed_name}" "${VALUE_OPTIONS[@]}"; then
      option_value "${parsed_name}" "$@"
      take_option "${parsed_name}" "${OPTION_VALUE}"
      shift "${OPTION_SHIFT}"
    elif is_one_of "${parsed_word}" "${FLAG_OPTIONS[@]}"; then
      take_option "${parsed_word}"
      shift
    elif [[ "${TAKES_ARGUMENTS:-true}" == false ]]; then
      # Without arguments, -- introduces nothing, and a stray word is most likely a mistyped option.
      usage_error "unexpected argument '${parsed_word}'"
    elif [[ "${parsed_word}" == -- ]]; then
      shift
      POSITIONAL_ARGUMENTS+=("$@")
      break
    elif [[ "${parsed_word}" == -* ]]; then
      usage_error "unknown option '${parsed_word}'"
    else
      POSITIONAL_ARGUMENTS+=("${parsed_word}")
      shift
    fi
  done
}
