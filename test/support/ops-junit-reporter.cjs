// For CI servers (npm run test:junit): the project's console reporter (spec + "N passed, N failed") and,
// on the same run, mocha's XUnit reporter writing the JUnit XML that Jenkins' junit step reads, to
// MOCHA_FILE (default test-results/junit.xml). mocha-junit-reporter does not work with mocha 12.
const path = require('node:path');
const Mocha = require('mocha');
const SummaryReporter = require('./summary-reporter.cjs');

class OpsJUnitReporter extends SummaryReporter {
  constructor(runner, options) {
    super(runner, options);
    const output = process.env.MOCHA_FILE || path.join('test-results', 'junit.xml');
    this.xunit = new Mocha.reporters.XUnit(runner, {
      ...options,
      reporterOptions: { suiteName: 'ec2-creator', ...options?.reporterOptions, output },
    });
  }

  // Mocha waits only for its own reporter: close the XML file before the process may exit.
  done(failures, fn) {
    this.xunit.done(failures, fn);
  }
}

module.exports = OpsJUnitReporter;
