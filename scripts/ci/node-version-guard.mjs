// Preloaded into every node process that scripts/ci/on-node.sh runs, through NODE_OPTIONS. A process that
// ends up on another Node (an absolute path, a PATH that lost the chosen Node's bin) would otherwise pass
// the step on the wrong version unnoticed: it stops here instead, and every process notes its version in
// a log so the step can show what really ran. Plain JavaScript, so it loads before tsx does.
import { appendFileSync } from 'node:fs';

const expected = process.env.EC2_CREATOR_EXPECT_NODE_VERSION;
const log = process.env.EC2_CREATOR_NODE_VERSION_LOG;
const matches = !expected || process.version === expected;

if (log) {
  appendFileSync(log, `${matches ? 'ok' : 'WRONG'} ${process.version} ${process.execPath} ${process.argv.slice(1, 3).join(' ')}\n`);
}
if (!matches) {
  process.stderr.write(`node-version-guard: ${process.execPath} is Node ${process.version}, this step expects Node ${expected}\n`);
  process.exit(70);
}
