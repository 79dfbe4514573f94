#!/usr/bin/env bash
#
# Build the project and run the API tests (`npm run test:api`) on Node 24, the current LTS, taken from the
# npm registry, while the machine's Node 20 stays what the rest of CI uses. Needs `npm ci` to have run.
#
# Nothing in the checkout is written: the work happens in a temporary copy of it whose node_modules links
# to the checkout's packages, except better-sqlite3, which is copied and compiled there for Node 24 (its
# addon in node_modules is built for Node 20's ABI and cannot load on 24). Exit 0 when the build and every
# test pass; the last line is a summary with the test count.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename -- "$0")

Build and run the API tests on Node 24 from the npm registry, in a temporary copy of the checkout.
Environment:
  NODE24_VERSION          the Node that runs everything (default 24: the newest 24.x)
  NODE24_HEADERS_VERSION  the Node whose headers better-sqlite3 is compiled against (default 24.18.1)
  NODE24_KEEP=1           keep the temporary folder (named on the first line)
Exit codes: 0 passed, 1 a test failed, 2 setup failed (download, compile, build, probe).
USAGE
}

case "${1:-}" in
-h | --help) usage; exit 0 ;;
'') ;;
*) usage >&2; exit 2 ;;
esac

root="$(cd "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)"
runtime_spec="${NODE24_VERSION:-24}"
# From 24.19.0 on, Node's node_object_wrap.h registers an environment cleanup hook in every ObjectWrap and
# removes it in the destructor, which aborts when V8 finalizes the object outside JavaScript. better-sqlite3
# 12 builds its Statement on that ObjectWrap, so compiled against those headers it kills the process at an
# idle garbage collection. The abort follows the headers, not the runtime: an addon compiled against
# 24.18.1's (same ABI) runs cleanly on every 24.x. better-sqlite3 13 (Node-API) is free of it, but needs
# Node 22. sqlite-idle-gc-probe.cjs below proves whichever headers are used.
headers_spec="${NODE24_HEADERS_VERSION:-24.18.1}"
expected_major="${runtime_spec%%.*}"
started=${SECONDS}

die() { echo "node24: $*" >&2; exit 2; }
elapsed() { local s=$((SECONDS - $1)); printf '%d min %02d s' $((s / 60)) $((s % 60)); }

[[ -d "${root}/node_modules/better-sqlite3" ]] || die "no node_modules/better-sqlite3: run npm ci first"
for tool in npm git jq tar make g++ python3; do
  command -v "${tool}" >/dev/null 2>&1 || die "${tool} is not on PATH (node-gyp needs make, g++ and python3)"
done
case "$(uname -m)" in
x86_64) arch=x64 ;;
aarch64 | arm64) arch=arm64 ;;
*) die "no Node build on the npm registry for $(uname -m)" ;;
esac

work="$(mktemp -d "${TMPDIR:-/tmp}/ec2-creator-node24-XXXXXX")"
if [[ "${NODE24_KEEP:-}" == 1 ]]; then
  echo "node24: keeping ${work}"
else
  trap 'rm -rf -- "${work}"' EXIT
fi

# The platform package behind the registry's `node` package, fetched directly: it holds bin/node and
# include/node (the headers node-gyp needs, since nodejs.org cannot be reached), and, unlike `node`, runs
# no install script that would fetch it a second time. Prints the version unpacked into $2.
fetch_node() {
  local spec="$1" dest="$2" tarball
  tarball="$(cd "${work}" && npm pack --silent --loglevel=error "node-linux-${arch}@${spec}")" ||
    die "npm pack node-linux-${arch}@${spec} failed"
  mkdir "${dest}"
  tar -xzf "${work}/${tarball}" -C "${dest}" --strip-components=1
  rm -f -- "${work}/${tarball}"
  [[ -x "${dest}/bin/node" && -f "${dest}/include/node/node.h" ]] || die "${tarball} has no bin/node or include/node"
  "${dest}/bin/node" --version
}
abi_of_headers() { sed -n 's/^#define NODE_MODULE_VERSION \([0-9][0-9]*\)$/\1/p' "$1/include/node/node_version.h"; }

phase=${SECONDS}
node_version="$(fetch_node "${runtime_spec}" "${work}/node")"
[[ "${node_version}" == "v${expected_major}."* ]] || die "node-linux-${arch}@${runtime_spec} is ${node_version}, not Node ${expected_major}"
headers_dir="${work}/node"
headers_version="${node_version}"
if [[ "v${headers_spec}" != "${node_version}" ]]; then
  headers_dir="${work}/headers"
  headers_version="$(fetch_node "${headers_spec}" "${headers_dir}")"
fi
runtime_abi="$("${work}/node/bin/node" -p process.versions.modules)"
[[ "$(abi_of_headers "${headers_dir}")" == "${runtime_abi}" ]] ||
  die "headers of ${headers_version} are not for ABI ${runtime_abi} of ${node_version}"
echo "node24: runs on ${node_version}, compiles against the headers of ${headers_version} (ABI ${runtime_abi}) ($(elapsed "${phase}"))"

# The copy: the checkout as a clone would have it, plus files not yet committed (node_modules is linked
# below, also when it is itself a link, which .gitignore's "node_modules/" does not match).
phase=${SECONDS}
repo="${work}/repo"
mkdir "${repo}"
git -C "${root}" ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' file; do
    if [[ "${file}" != node_modules && "${file}" != node_modules/* && -e "${root}/${file}" ]]; then printf '%s\0' "${file}"; fi
  done |
  tar -C "${root}" --null -T - -cf - | tar -C "${repo}" -xf -
mkdir "${repo}/node_modules"
shopt -s dotglob nullglob
for entry in "${root}"/node_modules/*; do
  [[ "$(basename -- "${entry}")" == better-sqlite3 ]] || ln -s "${entry}" "${repo}/node_modules/"
done
shopt -u dotglob nullglob
addon_dir="${repo}/node_modules/better-sqlite3"
cp -a "${root}/node_modules/better-sqlite3" "${addon_dir}"
rm -rf -- "${addon_dir}/build"

# npm's own node-gyp, run on Node 24: --nodedir wins over the nodedir (Node 20's, /usr) that npm's
# configuration may set, and nothing is downloaded.
npm_cli="$(readlink -f -- "$(command -v npm)")"
node_gyp="$(dirname -- "${npm_cli}")/../node_modules/node-gyp/bin/node-gyp.js"
[[ -f "${node_gyp}" ]] || die "no node-gyp beside npm (${node_gyp})"
if ! (cd "${addon_dir}" && "${work}/node/bin/node" "${node_gyp}" rebuild --release --jobs=max --nodedir="${headers_dir}") \
  >"${work}/node-gyp.log" 2>&1; then
  tail -n 40 -- "${work}/node-gyp.log" >&2
  die "compiling better-sqlite3 for ${node_version} failed"
fi
echo "node24: better-sqlite3 $(jq -r .version "${addon_dir}/package.json") compiled with node-gyp --nodedir=${headers_dir} ($(elapsed "${phase}"))"

# From here on every process is Node 24's: its bin first on PATH (npm and npx are scripts that run on the
# first node on PATH), and the guard stops any node process of another version.
export PATH="${work}/node/bin:${PATH}"
export EC2_CREATOR_EXPECT_NODE_MAJOR="${expected_major}"
export EC2_CREATOR_NODE_VERSION_LOG="${work}/node-processes.log"
export NODE_OPTIONS="--import=\"${repo}/scripts/ci/node-version-guard.mjs\"${NODE_OPTIONS:+ ${NODE_OPTIONS}}"
: >"${EC2_CREATOR_NODE_VERSION_LOG}"
cd "${repo}"
echo "node24: on PATH: node $(node --version), npm $(npm --version)"

phase=${SECONDS}
node scripts/ci/sqlite-idle-gc-probe.cjs ||
  die "better-sqlite3 compiled against ${headers_version}'s headers aborts on ${node_version} (exit $?)"
echo "node24: idle garbage collection probe ($(elapsed "${phase}"))"

phase=${SECONDS}
npm run --silent build || die "npm run build failed on ${node_version}"
echo "node24: npm run build ($(elapsed "${phase}"))"

phase=${SECONDS}
status=0
npm run --silent test:api 2>&1 | tee "${work}/tests.log" || status=$?
tests_time="$(elapsed "${phase}")"
count="$(grep -E '^[0-9]+ passed, [0-9]+ failed' "${work}/tests.log" | tail -n 1 || true)"

processes="$(wc -l <"${EC2_CREATOR_NODE_VERSION_LOG}")"
wrong="$(grep -c '^WRONG' "${EC2_CREATOR_NODE_VERSION_LOG}" || true)"
versions="$(awk '{ print $2 }' "${EC2_CREATOR_NODE_VERSION_LOG}" | sort -u | paste -sd, -)"
if ((wrong > 0)); then
  grep '^WRONG' "${EC2_CREATOR_NODE_VERSION_LOG}" >&2
  status=1
fi
echo "node24: every node process of the probe, build and tests (version, binary, script):"
sed 's/^/  /' "${EC2_CREATOR_NODE_VERSION_LOG}"
echo "node24: ${processes} node processes ran, on ${versions}; ${wrong} on another version"
echo "node24: ${node_version}: build ok, API tests ${count:-without a summary} in ${tests_time}; whole step $(elapsed "${started}")"
((status == 0)) || exit 1
