/**
 * Property-based fuzzing (fast-check) of every route in the OpenAPI document: random bodies, path values,
 * query strings and headers (no, wrong, viewer or operator tokens). Properties: never a 5xx; no script runs
 * for a refused request; every answer is documented for its operation and validates (ajv, JSON Schema
 * 2020-12) against the OpenAPI response schema. The scripts are a fixture that answers "not found" at once,
 * so nothing reaches EC2 and runs stay fast. Seeded; the seed and counterexample print on failure.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { ValidateFunction } from 'ajv';
import path from 'node:path';
import request from 'supertest';
import { expectProblem, type Harness } from '../support/app-harness.js';
import {
  OPERATOR_TOKEN, VIEWER_TOKEN, bearer, concretePath, operationsOf, securedHarness, securityFixtures,
  type RouteOperation,
} from './support.js';

const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;
const SEED = Number(process.env.FUZZ_SEED ?? 20240506);
const RUNS = Number(process.env.FUZZ_RUNS ?? 120);
/** Statuses that mean "refused before doing anything": no script may have run. */
const REFUSED = new Set([400, 401, 403, 405, 413, 415, 429]);

/** Stands for a body over 16 kB (expanded when sent, so counterexamples stay readable). */
const BIG_BODY = '<17 kB body>';

interface Sample {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: string | undefined;
  contentType: string | undefined;
}

describe('fuzzing every OpenAPI route', function () {
  this.timeout(300_000);
  let h: Harness;
  let document: Record<string, any>;
  let routes: RouteOperation[];
  const validators = new Map<string, ValidateFunction>();
  let ajv: Ajv2020;
  /** Statuses seen per property, to check the fuzzing reaches past authentication. */
  const statuses = new Map<number, number>();
  beforeEach(() => statuses.clear());

  before(async () => {
    h = securedHarness({
      scriptsDir: path.join(securityFixtures, 'not-found'),
      config: { rateLimitPerMinute: 100_000 },
    });
    document = (await request(h.app).get('/openapi.json').set('Authorization', bearer(VIEWER_TOKEN))).body;
    routes = operationsOf(document);
    ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
  });
  after(() => h.close());

  function validatorFor(schema: unknown): ValidateFunction {
    const key = JSON.stringify(schema);
    let v = validators.get(key);
    if (!v) {
      v = ajv.compile({ ...(schema as object), components: document.components });
      validators.set(key, v);
    }
    return v;
  }

  /** Matches a concrete path (without query) to an OpenAPI template. */
  function routeFor(method: string, urlPath: string): RouteOperation | undefined {
    return routes.find((r) => r.method === method && new RegExp(`^${r.template.replace(/\{[^}]+\}/g, '[^/]+')}/?$`).test(urlPath));
  }

  async function send(sample: Sample): Promise<void> {
    const runsBefore = h.runs.length;
    const qs = new URLSearchParams(sample.query).toString();
    const url = `${sample.path}${qs ? `?${qs}` : ''}`;
    let call = (request(h.app) as any)[sample.method](url);
    for (const [name, value] of Object.entries(sample.headers)) call = call.set(name, value);
    if (sample.body !== undefined) {
      const payload = sample.body === BIG_BODY ? JSON.stringify({ pad: 'x'.repeat(17 * 1024) }) : sample.body;
      call = call.set('Content-Type', sample.contentType ?? 'application/json').send(payload);
    }
    // An event stream that opened stays open: its headers are the answer, then the client leaves.
    if (sample.method === 'get') call = call.buffer(true).parse(streamOrBody);
    const response = await call;
    statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
    const where = `${sample.method.toUpperCase()} ${url} → ${response.status} ${JSON.stringify(response.body).slice(0, 300)}`;

    assert.ok(response.status < 500, `5xx: ${where}`);
    if (REFUSED.has(response.status)) assert.equal(h.runs.length, runsBefore, `a script ran for a refused request: ${where}`);
    if (response.status === 401) assert.match(String(response.headers['www-authenticate']), /^Bearer realm="ec2-creator"/);
    if (response.status === 429) assert.match(String(response.headers['retry-after']), /^\d+$/);

    const route = routeFor(sample.method, sample.path.split('?')[0] ?? sample.path);
    if (!route || sample.method === 'head') {
      // Not in the document (unknown path or method): still a problem document, never an HTML page.
      if (sample.method !== 'head' && response.status >= 400) expectProblem(response, response.status);
      return;
    }
    const documented = route.operation.responses?.[String(response.status)];
    assert.ok(documented, `undocumented status: ${where}`);
    const contentType = String(response.headers['content-type'] ?? '').split(';')[0] ?? '';
    const content = documented.content as Record<string, { schema: unknown }> | undefined;
    if (!content) {
      assert.equal(response.text ?? '', '', `documented without a body but has one: ${where}`);
      return;
    }
    const media = content[contentType];
    assert.ok(media, `undocumented content type ${contentType}: ${where}`);
    if (contentType === 'text/event-stream') return;
    const validate = validatorFor(media.schema);
    assert.ok(validate(response.body), `response does not match the OpenAPI schema: ${where}\n${JSON.stringify(validate.errors)}`);
  }

  /** supertest's parser: a body read whole (JSON when it is), but an event stream closed after its headers. */
  function streamOrBody(res: any, done: (error: Error | null, body: unknown) => void): void {
    if (String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
      res.destroy();
      done(null, null);
      return;
    }
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => (text += chunk));
    res.on('end', () => {
      try {
        done(null, text === '' ? {} : JSON.parse(text));
      } catch {
        done(null, text);
      }
    });
  }

  // --- arbitraries ---------------------------------------------------------------------------------------
  const printable = fc.string({ unit: fc.constantFrom(...' !"#$%&\'()*+,-./0123456789:;<=>?@ABCXYZabcxyz[\\]^_`{|}~'.split('')), maxLength: 40 });
  const anyText = fc.oneof(printable, fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }));
  const idValue = fc.oneof(
    fc.constant('i-0123456789abcdef0'),
    fc.stringMatching(/^i-[0-9a-f]{17}$/),
    fc.stringMatching(/^i-[0-9a-f]{8}$/),
    anyText.filter((s) => s.length > 0),
    fc.constantFrom('..', '--all', '%00', 'i-0123456789abcdef0/../x', '$(id)', ' ', 'i-0123456789ABCDEF0'),
  );
  const authHeader = fc.oneof(
    fc.constant(undefined),
    fc.constant(bearer(OPERATOR_TOKEN)),
    fc.constant(bearer(VIEWER_TOKEN)),
    printable.map((s) => `Bearer ${s}`),
    printable,
  );
  const extraHeaders = fc.dictionary(
    fc.constantFrom('X-Request-Id', 'Accept', 'Prefer', 'Idempotency-Key', 'X-Forwarded-For', 'If-None-Match', 'X-Fuzz'),
    printable.map((s) => s.trim()).filter((s) => s.length > 0),
    { maxKeys: 3 },
  );
  const query = fc.dictionary(
    fc.oneof(fc.constantFrom('state', 'name', 'limit', 'cursor', 'include_terminated', 'kind', 'status', 'actor', 'instance_id', 'client_address'), printable),
    fc.oneof(printable, fc.constantFrom('running', 'true', 'false', '0', '1', '1000', '1001', '-1', 'bm90LWEtY3Vyc29y')),
    { maxKeys: 4 },
  );
  const jsonValue = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v));
  const createish = fc.record(
    {
      name: fc.oneof(printable, fc.constant('web-1'), fc.constant('--help')),
      ami: fc.oneof(fc.constant('ami-1e749f67'), printable),
      instance_type: fc.oneof(fc.constantFrom('t3.micro', 't4g.micro', 'm5.large'), printable),
      storage_gb: fc.oneof(fc.integer({ min: -5, max: 20_000 }), fc.double(), printable),
      create_security_group: fc.oneof(fc.boolean(), printable),
      extra: fc.jsonValue({ maxDepth: 2 }),
    },
    { requiredKeys: [] },
  ).map((v) => JSON.stringify(v));
  const body = fc.oneof(
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 3, arbitrary: createish },
    { weight: 2, arbitrary: jsonValue },
    { weight: 1, arbitrary: anyText },
    { weight: 1, arbitrary: fc.constant(BIG_BODY) },
  );
  const contentType = fc.oneof(
    { weight: 4, arbitrary: fc.constant('application/json') },
    { weight: 1, arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/merge-patch+json', 'application/json; charset=latin1') },
  );

  function sampleFor(routeArb: fc.Arbitrary<{ method: string; path: string }>): fc.Arbitrary<Sample> {
    return fc
      .record({ target: routeArb, query, auth: authHeader, extra: extraHeaders, body, contentType })
      .map(({ target, query: q, auth, extra, body: b, contentType: ct }) => ({
        method: target.method,
        path: target.path,
        query: q,
        headers: { ...extra, ...(auth === undefined ? {} : { Authorization: auth }) },
        body: b,
        contentType: ct,
      }));
  }

  const groups: Array<[string, (r: RouteOperation) => boolean]> = [
    ['reads (GET)', (r) => r.method === 'get'],
    ['changes (POST, PUT, PATCH, DELETE)', (r) => r.method !== 'get'],
  ];
  for (const [label, pick] of groups) {
    it(`when ${label} get random paths, queries, headers and bodies, then no 5xx, no script for refusals, answers match the document`, async () => {
      const chosen = routes.filter(pick);
      assert.ok(chosen.length > 0);
      const target = fc.oneof(
        ...chosen.map((r) => idValue.map((id) => ({ method: r.method, path: concretePath(r.template, encodeURIComponent(id)) }))),
      );
      await fc.assert(fc.asyncProperty(sampleFor(target), send), { seed: SEED, numRuns: RUNS * chosen.length, verbose: 1 });
      const seen = [...statuses.keys()];
      assert.ok(seen.includes(401) && seen.some((st) => st !== 401 && st !== 403), `statuses seen: ${JSON.stringify([...statuses])}`);
      if (process.env.FUZZ_VERBOSE) console.log(label, JSON.stringify([...statuses].sort((a, b) => a[0] - b[0])));
    });
  }

  it('when methods and paths outside the document are used, then 401/403/404/405 problems, never 5xx or a script', async () => {
    const target = fc.record({
      method: fc.constantFrom('get', 'post', 'put', 'patch', 'delete', 'options'),
      path: fc.oneof(
        fc.array(idValue.map(encodeURIComponent), { minLength: 1, maxLength: 4 }).map((parts) => `/${parts.join('/')}`),
        fc.constantFrom('/instances/i-0123456789abcdef0/reboot', '/INSTANCES', '/health/../instances', '/docs/../instances', '/admin', '/'),
      ),
    });
    await fc.assert(fc.asyncProperty(sampleFor(target), send), { seed: SEED, numRuns: RUNS, verbose: 1 });
  });

  it('when an operator sends a valid create body, then the fuzz fixture answers (the happy path is reachable and documented)', async () => {
    const response = await request(h.app)
      .post('/instances')
      .set('Authorization', bearer(OPERATOR_TOKEN))
      .send({ name: 'fuzz-1', ami: 'ami-1e749f67', instance_type: 't3.micro', storage_gb: 8 });
    // describe_image.sh says "not found" → 422 naming ami; a script did run, as it should for a valid request.
    expectProblem(response, 422);
    assert.ok(h.runs.some((r) => r.script === 'describe_image.sh'));
  });
});
