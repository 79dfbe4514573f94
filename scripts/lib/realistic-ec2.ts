/**
 * EC2 as it really behaves, in front of moto: an HTTP proxy that the AWS CLI (or any EC2 client) is pointed
 * at instead of moto itself. moto switches states at once, ignores ClientToken and is immediately
 * consistent; real EC2 does none of that, and the AWS documentation says what it does instead:
 *  - a launched instance is `pending` for a while (here `pendingMs`), and so is a started one; a stopped one
 *    is `stopping` (`stoppingMs`), a terminated one `shutting-down` (`shuttingDownMs`);
 *  - for a few seconds after RunInstances (here a seeded draw from `notFoundMs`), requests that name the new
 *    id fail with InvalidInstanceID.NotFound and listings leave it out ("eventual consistency");
 *  - StopInstances on an instance that is pending, shutting-down or terminated, and StartInstances on one that
 *    is stopping, shutting-down or terminated, fail with IncorrectInstanceState;
 *  - RunInstances repeated with the same ClientToken and the same parameters answers the first reservation
 *    and launches nothing; with other parameters it fails with IdempotentParameterMismatch;
 *  - a seeded fraction of requests (`throttleRate`) is throttled with RequestLimitExceeded. As AWS's token
 *    buckets refill between a client's retries, one request is never throttled more than
 *    `maxThrottlesInARow` times in a row.
 * The states it shows are moto's, overlaid for the durations above; what moto holds is changed at once, as
 * EC2 would have it changed in the end. Its clock (`now`) is injectable, so a test moves time on by
 * itself instead of waiting; `hold` stops the next request of a kind until the test lets it go.
 */
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { XMLBuilder, XMLParser } from 'fast-xml-parser';

export interface RealisticEc2Options {
  /** moto's endpoint, e.g. http://127.0.0.1:5000. */
  upstream: string;
  pendingMs?: number;
  stoppingMs?: number;
  shuttingDownMs?: number;
  /** How long a new instance stays invisible, drawn from [min, max] for each launch. */
  notFoundMs?: readonly [number, number];
  /** The fraction of requests throttled, 0 to 1. */
  throttleRate?: number;
  maxThrottlesInARow?: number;
  /** Seeds the draws (throttling and invisibility), so a run can be repeated. */
  seed?: number;
  /** The emulator's clock in ms (default Date.now). */
  now?: () => number;
}

/** What the emulator did, for tests and the sandbox. */
export interface RealisticEc2Stats {
  requests: number;
  throttled: number;
  notFound: number;
  incorrectState: number;
  /** RunInstances answered from an earlier request with the same ClientToken. */
  replayed: number;
  mismatched: number;
  /** Instances moto launched through the emulator. */
  launched: number;
}

export interface Hold {
  /** Settles once a request of the held kind has arrived and is held. */
  entered: Promise<void>;
  release(): void;
}

export interface RealisticEc2 {
  endpoint: string;
  readonly stats: RealisticEc2Stats;
  /**
   * Holds the next `action` request that reaches moto: `before` it is sent there, or `after` moto has acted
   * on it (EC2 accepted it; its answer has not reached the client yet).
   */
  hold(action: string, when?: 'before' | 'after'): Hold;
  /** The state the emulator shows for an instance now, or undefined for one it did not see. */
  stateOf(instanceId: string): string | undefined;
  close(): Promise<void>;
}

export const STATE_CODES: Record<string, number> = {
  pending: 0, running: 16, 'shutting-down': 32, terminated: 48, stopping: 64, stopped: 80,
};

interface Tracked {
  /** Until when requests naming it fail with NotFound and listings leave it out. */
  invisibleUntil: number;
  /** The transitional state shown over moto's until `until`. */
  overlay?: { state: string; until: number } | undefined;
  /** The state moto reported last (what the instance will be once the overlay ends). */
  settled: string;
}

type XmlNode = Record<string, unknown>;

const XML_OPTIONS = {
  preserveOrder: true, ignoreAttributes: false, parseTagValue: false, trimValues: false, processEntities: true,
  suppressEmptyNode: true,
} as const;
const parser = new XMLParser(XML_OPTIONS);
const builder = new XMLBuilder(XML_OPTIONS);

/** mulberry32: small, fast and good enough to make a run's draws repeatable. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function errorXml(code: string, message: string): string {
  const escaped = message.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${escaped}</Message>`
    + '</Error></Errors><RequestID>realistic-ec2</RequestID></Response>';
}

// --- the XML tree fast-xml-parser keeps in order: [{tag: [children], ':@': {attributes}}, {'#text': '…'}] ---

const tagOf = (node: XmlNode): string | undefined => Object.keys(node).find((key) => key !== ':@' && key !== '#text');
const childrenOf = (node: XmlNode): XmlNode[] => (node[tagOf(node) as string] as XmlNode[] | undefined) ?? [];
const childNamed = (node: XmlNode, name: string): XmlNode | undefined => childrenOf(node).find((c) => tagOf(c) === name);
function textOf(node: XmlNode | undefined): string | undefined {
  if (!node) return undefined;
  const text = childrenOf(node).find((c) => '#text' in c);
  return text === undefined ? undefined : String(text['#text']);
}
/** Every element named `name` below `node`, however deep, outermost first. */
function findAll(nodes: XmlNode[], name: string, found: XmlNode[] = []): XmlNode[] {
  for (const node of nodes) {
    const tag = tagOf(node);
    if (tag === undefined) continue;
    if (tag === name) found.push(node);
    else findAll(childrenOf(node), name, found);
  }
  return found;
}
function setState(stateNode: XmlNode | undefined, state: string): void {
  if (!stateNode) return;
  const children = childrenOf(stateNode);
  for (const child of children) {
    if (tagOf(child) === 'code') child.code = [{ '#text': String(STATE_CODES[state]) }];
    if (tagOf(child) === 'name') child.name = [{ '#text': state }];
  }
}

/** The values of a Query API list parameter: InstanceId.1, InstanceId.2, … */
function listParam(params: URLSearchParams, prefix: string): string[] {
  const values: string[] = [];
  for (let i = 1; params.has(`${prefix}.${i}`); i += 1) values.push(params.get(`${prefix}.${i}`) as string);
  return values;
}

/** The filters of a Describe call, as Name → values. */
function filtersOf(params: URLSearchParams): Array<{ index: number; name: string; values: string[] }> {
  const filters = [];
  for (let i = 1; params.has(`Filter.${i}.Name`); i += 1) {
    filters.push({ index: i, name: params.get(`Filter.${i}.Name`) as string, values: listParam(params, `Filter.${i}.Value`) });
  }
  return filters;
}

/** The parameters without the state filters, renumbered: moto filters on its own states, not the ones shown. */
function withoutStateFilters(params: URLSearchParams): URLSearchParams {
  const kept = new URLSearchParams();
  for (const [key, value] of params) if (!key.startsWith('Filter.')) kept.append(key, value);
  let n = 0;
  for (const filter of filtersOf(params)) {
    if (filter.name === 'instance-state-name' || filter.name === 'instance-state-code') continue;
    n += 1;
    kept.append(`Filter.${n}.Name`, filter.name);
    filter.values.forEach((value, i) => kept.append(`Filter.${n}.Value.${i + 1}`, value));
  }
  return kept;
}

function readBody(incoming: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => resolve(Buffer.concat(chunks)));
    incoming.on('error', reject);
  });
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export async function startRealisticEc2(options: RealisticEc2Options): Promise<RealisticEc2> {
  const target = new URL(options.upstream);
  const now = options.now ?? Date.now;
  const pendingMs = options.pendingMs ?? 8_000;
  const stoppingMs = options.stoppingMs ?? 10_000;
  const shuttingDownMs = options.shuttingDownMs ?? 8_000;
  const [invisibleMin, invisibleMax] = options.notFoundMs ?? [2_000, 6_000];
  const throttleRate = options.throttleRate ?? 0;
  const maxThrottlesInARow = options.maxThrottlesInARow ?? 2;
  const random = seededRandom(options.seed ?? 1);

  const stats: RealisticEc2Stats = { requests: 0, throttled: 0, notFound: 0, incorrectState: 0, replayed: 0, mismatched: 0, launched: 0 };
  const tracked = new Map<string, Tracked>();
  const throttledInARow = new Map<string, number>();
  const launchesByToken = new Map<string, { fingerprint: string; answer: Promise<Answer> }>();
  const holds: Array<{ action: string; when: 'before' | 'after'; enter: () => void; release: () => void; released: Promise<void> }> = [];
  const held = new Set<() => void>();

  function shownState(id: string, settled: string): string {
    const entry = tracked.get(id);
    if (!entry) return settled;
    entry.settled = settled;
    if (entry.overlay && now() < entry.overlay.until) return entry.overlay.state;
    entry.overlay = undefined;
    return settled;
  }
  const invisible = (id: string): boolean => (tracked.get(id)?.invisibleUntil ?? 0) > now();

  function upstream(method: string, path: string, headers: IncomingMessage['headers'], body: Buffer): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const forwarded = httpRequest(
        { hostname: target.hostname, port: target.port, method, path, headers: { ...headers, host: target.host, 'content-length': String(body.length) } },
        (answer) => {
          readBody(answer).then((data) => resolve({ status: answer.statusCode ?? 502, headers: answer.headers, body: data }), reject);
        },
      );
      forwarded.on('error', reject);
      forwarded.end(body);
    });
  }

  async function atHold(action: string, when: 'before' | 'after'): Promise<void> {
    const index = holds.findIndex((h) => h.action === action && h.when === when);
    if (index < 0) return;
    const [hold] = holds.splice(index, 1) as [(typeof holds)[number]];
    held.add(hold.release);
    hold.enter();
    await hold.released;
    held.delete(hold.release);
  }

  /**
   * Sends the request to moto, through any hold set for it. What moto did is taken note of (`noted`) before an
   * `after` hold: EC2 has acted, whether or not its answer ever reaches the client.
   */
  async function toMoto(action: string, incoming: IncomingMessage, body: Buffer, noted: (answer: Answer) => Answer = (a) => a): Promise<Answer> {
    await atHold(action, 'before');
    const answer = noted(await upstream(incoming.method ?? 'POST', incoming.url ?? '/', incoming.headers, body));
    await atHold(action, 'after');
    return answer;
  }

  /** moto's own states of the instances, read apart from any client request. */
  async function motoStates(ids: string[], headers: IncomingMessage['headers']): Promise<Map<string, string>> {
    const params = new URLSearchParams({ Action: 'DescribeInstances', Version: '2016-11-15' });
    ids.forEach((id, i) => params.append(`InstanceId.${i + 1}`, id));
    const answer = await upstream('POST', '/', { ...headers, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }, Buffer.from(params.toString()));
    const states = new Map<string, string>();
    if (answer.status !== 200) return states;
    for (const item of findAll(parser.parse(answer.body.toString('utf8')) as XmlNode[], 'instancesSet').flatMap(childrenOf)) {
      const id = textOf(childNamed(item, 'instanceId'));
      const state = textOf(childNamed(childNamed(item, 'instanceState') ?? {}, 'name'));
      if (id && state) states.set(id, state);
    }
    return states;
  }

  function refuse(outgoing: ServerResponse, status: number, code: string, message: string): void {
    outgoing.writeHead(status, { 'content-type': 'text/xml' }).end(errorXml(code, message));
  }

  function notFound(outgoing: ServerResponse, ids: string[]): void {
    stats.notFound += 1;
    const message = ids.length === 1
      ? `The instance ID '${ids[0]}' does not exist`
      : `The instance IDs '${ids.join(', ')}' do not exist`;
    refuse(outgoing, 400, 'InvalidInstanceID.NotFound', message);
  }

  function send(outgoing: ServerResponse, answer: Answer, body: Buffer | string = answer.body): void {
    const { 'content-length': _length, 'transfer-encoding': _encoding, ...headers } = answer.headers;
    outgoing.writeHead(answer.status, { ...headers, 'content-length': String(Buffer.byteLength(body)) }).end(body);
  }

  function shouldThrottle(body: Buffer): boolean {
    if (throttleRate <= 0) return false;
    const key = createHash('sha256').update(body).digest('hex');
    const inARow = throttledInARow.get(key) ?? 0;
    if (inARow < maxThrottlesInARow && random() < throttleRate) {
      throttledInARow.set(key, inARow + 1);
      return true;
    }
    throttledInARow.delete(key);
    return false;
  }

  async function runInstances(incoming: IncomingMessage, outgoing: ServerResponse, body: Buffer, params: URLSearchParams): Promise<void> {
    const token = params.get('ClientToken');
    const rest = [...params].filter(([key]) => key !== 'ClientToken').sort(([a], [b]) => a.localeCompare(b));
    const fingerprint = JSON.stringify(rest);
    const earlier = token ? launchesByToken.get(token) : undefined;
    if (earlier) {
      if (earlier.fingerprint !== fingerprint) {
        stats.mismatched += 1;
        refuse(outgoing, 400, 'IdempotentParameterMismatch',
          'Arguments on this idempotent request are inconsistent with arguments used in previous request(s).');
        return;
      }
      const first = await earlier.answer.catch(() => undefined);
      if (first && first.status === 200) {
        stats.replayed += 1;
        send(outgoing, first);
        return;
      }
    }
    const answer = toMoto('RunInstances', incoming, body, (got) => {
      if (got.status !== 200) return got;
      const tree = parser.parse(got.body.toString('utf8')) as XmlNode[];
      for (const item of findAll(tree, 'instancesSet').flatMap(childrenOf)) {
        const id = textOf(childNamed(item, 'instanceId'));
        if (!id) continue;
        stats.launched += 1;
        const at = now();
        tracked.set(id, {
          invisibleUntil: at + invisibleMin + random() * (invisibleMax - invisibleMin),
          overlay: { state: 'pending', until: at + pendingMs },
          settled: 'running',
        });
        setState(childNamed(item, 'instanceState'), 'pending');
      }
      return { ...got, body: Buffer.from(builder.build(tree) as string) };
    });
    if (token) {
      launchesByToken.set(token, { fingerprint, answer });
      // A launch EC2 refused leaves the token free for the next attempt.
      answer.then((got) => {
        if (got.status !== 200 && launchesByToken.get(token)?.answer === answer) launchesByToken.delete(token);
      }, () => launchesByToken.delete(token));
    }
    send(outgoing, await answer);
  }

  async function describeInstances(incoming: IncomingMessage, outgoing: ServerResponse, body: Buffer, params: URLSearchParams): Promise<void> {
    const ids = listParam(params, 'InstanceId');
    const hidden = ids.filter(invisible);
    if (hidden.length > 0) {
      notFound(outgoing, hidden);
      return;
    }
    const stateFilters = filtersOf(params).filter((f) => f.name === 'instance-state-name' || f.name === 'instance-state-code');
    const forwarded = stateFilters.length > 0 ? Buffer.from(withoutStateFilters(params).toString()) : body;
    const answer = await toMoto('DescribeInstances', incoming, forwarded);
    if (answer.status !== 200) {
      send(outgoing, answer);
      return;
    }
    const keep = (state: string): boolean => stateFilters.every((f) => f.values.includes(f.name === 'instance-state-name' ? state : String(STATE_CODES[state])));
    const tree = parser.parse(answer.body.toString('utf8')) as XmlNode[];
    for (const reservationSet of findAll(tree, 'reservationSet')) {
      const reservations = childrenOf(reservationSet);
      for (const reservation of reservations) {
        const instancesSet = childNamed(reservation, 'instancesSet');
        if (!instancesSet) continue;
        const items = childrenOf(instancesSet);
        const kept = items.filter((item) => {
          const id = textOf(childNamed(item, 'instanceId'));
          const stateNode = childNamed(item, 'instanceState');
          const settled = textOf(childNamed(stateNode ?? {}, 'name'));
          if (!id || !settled) return true;
          if (invisible(id)) return false;
          const state = shownState(id, settled);
          setState(stateNode, state);
          return keep(state);
        });
        items.splice(0, items.length, ...kept);
      }
      const emptied = reservations.filter((r) => childrenOf(childNamed(r, 'instancesSet') ?? {}).length === 0 && childNamed(r, 'instancesSet'));
      for (const gone of emptied) reservations.splice(reservations.indexOf(gone), 1);
    }
    send(outgoing, answer, builder.build(tree) as string);
  }

  /** What StartInstances, StopInstances and TerminateInstances refuse, and what they begin. */
  const CHANGES: Record<string, { refuses: string[]; verb: string; settles: string; from: Record<string, { state: string; ms: () => number }> }> = {
    StopInstances: {
      refuses: ['pending', 'shutting-down', 'terminated'],
      verb: 'stopped',
      settles: 'stopped',
      from: { running: { state: 'stopping', ms: () => stoppingMs } },
    },
    StartInstances: {
      refuses: ['stopping', 'shutting-down', 'terminated'],
      verb: 'started',
      settles: 'running',
      from: { stopped: { state: 'pending', ms: () => pendingMs } },
    },
    TerminateInstances: {
      refuses: [],
      verb: 'terminated',
      settles: 'terminated',
      from: Object.fromEntries(['pending', 'running', 'stopping', 'stopped'].map((s) => [s, { state: 'shutting-down', ms: () => shuttingDownMs }])),
    },
  };

  async function changeInstances(action: string, incoming: IncomingMessage, outgoing: ServerResponse, body: Buffer, params: URLSearchParams): Promise<void> {
    const change = CHANGES[action] as (typeof CHANGES)[string];
    const ids = listParam(params, 'InstanceId');
    const hidden = ids.filter(invisible);
    if (hidden.length > 0) {
      notFound(outgoing, hidden);
      return;
    }
    const settled = await motoStates(ids, incoming.headers);
    const before = new Map(ids.map((id) => [id, settled.has(id) ? shownState(id, settled.get(id) as string) : undefined]));
    const refused = ids.find((id) => change.refuses.includes(before.get(id) ?? ''));
    if (refused !== undefined) {
      stats.incorrectState += 1;
      const verb = action === 'StopInstances' ? 'This instance' : 'The instance';
      refuse(outgoing, 400, 'IncorrectInstanceState', `${verb} '${refused}' is not in a state from which it can be ${change.verb}.`);
      return;
    }
    const answer = await toMoto(action, incoming, body);
    if (answer.status !== 200) {
      send(outgoing, answer);
      return;
    }
    const tree = parser.parse(answer.body.toString('utf8')) as XmlNode[];
    for (const item of findAll(tree, 'instancesSet').flatMap(childrenOf)) {
      const id = textOf(childNamed(item, 'instanceId'));
      const previous = id === undefined ? undefined : before.get(id);
      if (!id || !previous) continue;
      // moto has made the change already (and may answer its own transitional state): what the instance
      // settles in is the change's end, and what it shows now is the change's transition or, for a change
      // it is already in or past, what it showed before.
      const entry = tracked.get(id) ?? { invisibleUntil: 0, settled: change.settles };
      tracked.set(id, entry);
      entry.settled = change.settles;
      const begins = change.from[previous];
      if (begins) entry.overlay = { state: begins.state, until: now() + begins.ms() };
      setState(childNamed(item, 'previousState'), previous);
      setState(childNamed(item, 'currentState'), begins ? begins.state : previous);
    }
    send(outgoing, answer, builder.build(tree) as string);
  }

  async function handle(incoming: IncomingMessage, outgoing: ServerResponse): Promise<void> {
    const body = await readBody(incoming);
    const params = new URLSearchParams(incoming.method === 'POST' ? body.toString('utf8') : (incoming.url ?? '').split('?')[1] ?? '');
    const action = params.get('Action');
    if (!action) {
      send(outgoing, await upstream(incoming.method ?? 'GET', incoming.url ?? '/', incoming.headers, body)); // moto's own API
      return;
    }
    stats.requests += 1;
    if (shouldThrottle(body)) {
      stats.throttled += 1;
      refuse(outgoing, 503, 'RequestLimitExceeded', 'Request limit exceeded.');
      return;
    }
    if (action === 'RunInstances') return runInstances(incoming, outgoing, body, params);
    if (action === 'DescribeInstances') return describeInstances(incoming, outgoing, body, params);
    if (action in CHANGES) return changeInstances(action, incoming, outgoing, body, params);
    if (action === 'CreateTags' || action === 'DeleteTags') {
      const hidden = listParam(params, 'ResourceId').filter(invisible);
      if (hidden.length > 0) {
        notFound(outgoing, hidden);
        return;
      }
    }
    send(outgoing, await toMoto(action, incoming, body));
  }

  const server: Server = createServer((incoming, outgoing) => {
    handle(incoming, outgoing).catch((error: unknown) => {
      if (!outgoing.headersSent) refuse(outgoing, 500, 'InternalError', `realistic-ec2: ${error instanceof Error ? error.message : String(error)}`);
      else outgoing.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    stats,
    hold(action, when = 'before') {
      let enter: () => void = () => undefined;
      let release: () => void = () => undefined;
      const entered = new Promise<void>((resolve) => (enter = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      holds.push({ action, when, enter, release: () => release(), released });
      return { entered, release };
    },
    stateOf(instanceId) {
      const entry = tracked.get(instanceId);
      if (!entry) return undefined;
      return entry.overlay && now() < entry.overlay.until ? entry.overlay.state : entry.settled;
    },
    close: () => new Promise<void>((resolve) => {
      for (const release of held) release();
      holds.splice(0);
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
