// The spec reporter, then the ten slowest files, then one closing line in the plain form CI reads:
// "N passed, N failed". A file's time is what its tests and hooks took (under --parallel the events
// arrive replayed once a file is done, so the reporter cannot clock files itself).
const path = require('node:path');
const Mocha = require('mocha');

const { EVENT_HOOK_END, EVENT_RUN_END, EVENT_TEST_END, EVENT_TEST_FAIL } = Mocha.Runner.constants;
const SLOWEST_SHOWN = Number(process.env.EC2_CREATOR_SLOWEST_SHOWN ?? 10);

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const fileMs = new Map();
    const add = (runnable) => {
      if (!runnable || !runnable.file || typeof runnable.duration !== 'number') return;
      fileMs.set(runnable.file, (fileMs.get(runnable.file) ?? 0) + runnable.duration);
    };
    runner.on(EVENT_TEST_END, add);
    runner.on(EVENT_HOOK_END, add);
    // A failed hook ends without EVENT_HOOK_END.
    runner.on(EVENT_TEST_FAIL, (runnable) => {
      if (runnable && runnable.type === 'hook') add(runnable);
    });
    runner.once(EVENT_RUN_END, () => {
      const slowest = [...fileMs].sort((a, b) => b[1] - a[1]).slice(0, SLOWEST_SHOWN);
      if (slowest.length > 1) {
        process.stdout.write(`\nslowest files:\n`);
        for (const [file, ms] of slowest) {
          process.stdout.write(`  ${(ms / 1000).toFixed(1).padStart(6)} s  ${path.relative(process.cwd(), file)}\n`);
        }
      }
      const { passes, failures, pending } = runner.stats;
      const skipped = pending > 0 ? `, ${pending} skipped` : '';
      process.stdout.write(`${passes} passed, ${failures} failed${skipped}\n`);
    });
  }
}

module.exports = SummaryReporter;
