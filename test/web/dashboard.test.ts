/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core against the real server
 * (in-process, on a loopback port), the real scripts and moto. Screenshots go to test-results/.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { arrangeRecordedInstance, createHarness, type Harness } from '../support/app-harness.js';
import { createKeyPair, ec2InstanceById, UBUNTU_X86_AMI } from '../support/ec2-reader.js';
import { resetMoto } from '../support/global-fixture.js';
import { OPERATOR_TOKEN, tokens, VIEWER_TOKEN } from '../security/support.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.join(process.cwd(), 'test-results');

describe('the dashboard in Chromium', function () {
  let browser: Browser;
  let h: Harness;
  let server: Server;
  let base: string;
  let page: Page;
  const dialogs: string[] = [];

  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    mkdirSync(SHOTS, { recursive: true });
  });
  after(async () => {
    await browser?.close();
  });
  beforeEach(async () => {
    await resetMoto();
    await createKeyPair();
    h = createHarness({ auth: { mode: 'tokens', tokens } });
    server = h.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    dialogs.length = 0;
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
  });
  afterEach(async () => {
    await page?.close();
    h.services.events.close();
    await new Promise((resolve) => server.close(resolve));
    h.close();
  });

  async function signIn(token: string): Promise<void> {
    await page.goto(base);
    await page.getByLabel('API token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }
  const row = (name: string) => page.locator('#instances tbody tr', { has: page.locator('td:first-child', { hasText: name }) });

  it('when an operator signs in, creates, stops and terminates, then the table follows each change live, without a reload', async () => {
    await signIn(OPERATOR_TOKEN);
    await page.getByText('alice (operator)').waitFor();
    await page.locator('#live', { hasText: 'live' }).waitFor();
    const cookies = await page.context().cookies();
    assert.ok(cookies.some((c) => c.name === 'ec2c_session' && c.httpOnly && c.sameSite === 'Strict'));
    assert.equal(await page.evaluate(() => document.cookie), '', 'the page cannot read its session');
    assert.equal(await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage)), '{}{}', 'no token in storage');

    await page.getByLabel('Name', { exact: true }).nth(1).fill('from-the-browser');
    await page.getByLabel('AMI').fill(UBUNTU_X86_AMI);
    await page.getByLabel('Instance type').selectOption('t3.micro');
    await page.getByRole('button', { name: 'Create' }).click();
    await row('from-the-browser').locator('td.state', { hasText: 'running' }).waitFor();
    const id = await row('from-the-browser').getAttribute('data-id');
    assert.ok(id);
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-instances.png'), fullPage: true });

    const navigations: string[] = [];
    page.on('framenavigated', (frame) => navigations.push(frame.url()));
    await row('from-the-browser').getByRole('button', { name: 'Stop' }).click();
    assert.equal(await row('from-the-browser').getByRole('button', { name: 'Terminate' }).isDisabled(), true, 'no second change while one runs');
    await row('from-the-browser').locator('td.state', { hasText: 'stopped' }).waitFor();
    await row('from-the-browser').getByRole('button', { name: 'Start' }).and(page.locator(':enabled')).waitFor();
    assert.equal((await ec2InstanceById(id)).State.Name, 'stopped');

    await row('from-the-browser').getByRole('button', { name: 'Terminate' }).click();
    const confirm = page.getByRole('button', { name: 'Terminate', exact: true }).last();
    assert.equal(await confirm.isDisabled(), true, 'not before the name is typed');
    await page.getByLabel('Instance name').fill('from-the-brows');
    assert.equal(await confirm.isDisabled(), true);
    await page.getByLabel('Instance name').fill('from-the-browser');
    await confirm.click();
    await row('from-the-browser').waitFor({ state: 'detached' });
    assert.equal((await ec2InstanceById(id)).State.Name, 'terminated');
    await page.getByLabel('Show terminated').check();
    await row('from-the-browser').locator('td.state', { hasText: 'terminated' }).waitFor();
    assert.deepEqual(navigations, [], 'no reload');
    await page.locator('#operation-list tbody tr', { hasText: 'terminate' }).first().waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'dashboard-operations.png'), fullPage: true });
  });

  it('when the create form is refused, then the problem is shown next to the field', async () => {
    await signIn(OPERATOR_TOKEN);
    await page.getByText('alice (operator)').waitFor();
    await page.getByLabel('Name', { exact: true }).nth(1).fill('too-big');
    await page.getByLabel('AMI').fill(UBUNTU_X86_AMI);
    await page.getByLabel('Storage (GiB)').fill('500');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.locator('#error-storage_gb', { hasText: /30/ }).waitFor();
    assert.deepEqual(await h.records.operations.list({ limit: 5 }), [], 'nothing was recorded');
  });

  it('when a viewer signs in, then the page is read-only: no create form and no buttons that change anything', async () => {
    await arrangeRecordedInstance(h, { name: 'looked-at' });
    await signIn(VIEWER_TOKEN);
    await page.getByText('victor (viewer)').waitFor();
    await row('looked-at').waitFor();
    await page.locator('#live', { hasText: 'live' }).waitFor(); // a viewer's session reads the event stream
    assert.equal(await page.locator('#create-form').isVisible(), false);
    assert.equal(await row('looked-at').getByRole('button', { name: /Start|Stop|Terminate/ }).count(), 0);
  });

  it('when an instance is named like markup, then it is shown as those characters and nothing runs', async () => {
    const name = '<img src=x onerror=alert(1)>';
    await arrangeRecordedInstance(h, { name });
    await signIn(OPERATOR_TOKEN);
    await row(name).waitFor();
    assert.equal(await row(name).locator('td').first().textContent(), name);
    assert.equal(await page.locator('#instances img').count(), 0);
    assert.deepEqual(dialogs, []);
    const policy = (await page.request.get(base)).headers()['content-security-policy'] ?? '';
    assert.match(policy, /script-src 'self'/);
    assert.doesNotMatch(policy, /unsafe-inline/);
  });

  it('when a wrong token is given, then the page says so and stays signed out', async () => {
    await signIn(`${OPERATOR_TOKEN.slice(0, -2)}zz`);
    await page.locator('#sign-in-error', { hasText: 'The token is not valid' }).waitFor();
    assert.equal(await page.locator('#fleet').isVisible(), false);
    assert.deepEqual(await page.context().cookies(), []);
  });
});
