/** The lifecycle engine's configuration variables: defaults, values, and refusals naming the variable. */
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../app/config.js';

describe('lifecycle configuration', () => {
  it('when nothing is set, then 8 scripts at once, 32 queued, every kind times out at SCRIPT_TIMEOUT_MS, 25 s shutdown (fits a 30 s grace period), no periodic sync, 24 h keys', () => {
    const config = loadConfig({ AUTH_DISABLED: 'true' }, '/srv/app');
    assert.equal(config.maxConcurrentScripts, 8);
    assert.equal(config.maxQueuedOperations, 32);
    assert.deepEqual(config.timeouts, { create: 300_000, start: 300_000, stop: 300_000, terminate: 300_000, describe: 300_000 });
    assert.equal(config.shutdownTimeoutMs, 25_000);
    assert.equal(config.syncIntervalS, 0);
    assert.equal(config.idempotencyTtlHours, 24);
  });

  it('when values are set, then per-kind timeouts override SCRIPT_TIMEOUT_MS, which the others follow', () => {
    const config = loadConfig({
      AUTH_DISABLED: 'true', SCRIPT_TIMEOUT_MS: '60000', CREATE_TIMEOUT_MS: '900000', STOP_TIMEOUT_MS: '1000',
      MAX_CONCURRENT_SCRIPTS: '2', MAX_QUEUED_OPERATIONS: '0', SHUTDOWN_TIMEOUT_MS: '0', SYNC_INTERVAL_S: '300',
      IDEMPOTENCY_KEY_TTL_HOURS: '48',
    });
    assert.deepEqual(config.timeouts, { create: 900_000, start: 60_000, stop: 1_000, terminate: 60_000, describe: 60_000 });
    assert.equal(config.maxConcurrentScripts, 2);
    assert.equal(config.maxQueuedOperations, 0);
    assert.equal(config.shutdownTimeoutMs, 0);
    assert.equal(config.syncIntervalS, 300);
    assert.equal(config.idempotencyTtlHours, 48);
  });

  const bad: Array<[string, string]> = [
    ['MAX_CONCURRENT_SCRIPTS', '0'], ['MAX_CONCURRENT_SCRIPTS', 'many'], ['MAX_QUEUED_OPERATIONS', '-1'],
    ['CREATE_TIMEOUT_MS', '999'], ['START_TIMEOUT_MS', '1e6'], ['STOP_TIMEOUT_MS', 'soon'], ['TERMINATE_TIMEOUT_MS', '0'],
    ['DESCRIBE_TIMEOUT_MS', '3600001'], ['SHUTDOWN_TIMEOUT_MS', '-5'], ['SYNC_INTERVAL_S', '5'], ['SYNC_INTERVAL_S', 'hourly'],
    ['IDEMPOTENCY_KEY_TTL_HOURS', '23'],
  ];
  for (const [variable, value] of bad) {
    it(`when ${variable}=${JSON.stringify(value)}, then start-up fails naming ${variable}`, () => {
      assert.throws(
        () => loadConfig({ AUTH_DISABLED: 'true', [variable]: value }),
        (error: unknown) => error instanceof ConfigError && error.variable === variable,
      );
    });
  }
});
