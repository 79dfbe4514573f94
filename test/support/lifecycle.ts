/** Shared by the lifecycle tests: the fake aws in front of moto, marker files, polling on events. */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';

const WAIT_LIMIT_MS = 60_000;

/** Polls `condition` until it holds (events, never durations: the limit only stops a hung test). */
export async function until(what: string, condition: () => boolean | Promise<boolean>, limitMs = WAIT_LIMIT_MS): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Marker files `<prefix>.<pid>` the fake wrote in `dir`, with their content. */
export function markers(dir: string, prefix: string): Array<{ pid: number; text: string }> {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${prefix}.`) && !f.endsWith('.tmp'))
    .map((f) => ({ pid: Number(f.slice(prefix.length + 1)), text: readFileSync(path.join(dir, f), 'utf8').trim() }));
}

/** Lines "OPERATION TOKEN" the capturing fake recorded. */
export function captured(file: string): Array<{ operation: string; token: string }> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const [operation = '', token = ''] = l.split(' ');
      return { operation, token };
    });
}

/** Live (non-zombie) processes whose process group is `pgid`, read from /proc. */
export function liveMembersOfGroup(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') members.push(Number(entry));
    } catch {
      // ended while we looked
    }
  }
  return members;
}

/** Kills a whole process group (an orphaned script after the server was SIGKILLed); quiet when it is gone. */
export function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * One HTTP request on a fresh connection (no keep-alive pool: a draining server closes idle connections,
 * and a pooled one could be reused just as it is closed). Headers come back lower-cased in a Headers.
 */
export async function getJson(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | undefined } = {},
): Promise<{ status: number; headers: Headers; body: any }> {
  return await new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: init.method ?? 'GET', headers: init.headers, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const headers = new Headers();
        for (const [name, value] of Object.entries(response.headers)) {
          if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
        }
        try {
          resolve({ status: response.statusCode ?? 0, headers, body: text ? JSON.parse(text) : null });
        } catch (error) {
          reject(error);
        }
      });
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(init.body);
  });
}

/**
 * A gate folder for the fake aws (FAKE_AWS_GATE_DIR), new for each test of the describe that calls this:
 * after each test it is released (no fake is ever left waiting) and removed. Call it before registering
 * hooks that close what the gate holds, so the release comes first.
 */
export function useGate(): { readonly dir: string; release(): void } {
  let dir = '';
  const gate = {
    get dir() {
      return dir;
    },
    release() {
      if (dir) writeFileSync(path.join(dir, 'release'), '');
    },
  };
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ec2-creator-gate-'));
  });
  afterEach(() => {
    gate.release();
    rmSync(dir, { recursive: true, force: true });
  });
  return gate;
}

/** POSTs JSON (or nothing) to the real server; see getJson. */
export function postJson(url: string, body?: unknown, headers: Record<string, string> = {}) {
  if (body === undefined) return getJson(url, { method: 'POST', headers });
  return getJson(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

/** Writes the service's SQLite file directly, as another connection would (WAL: the server's own waits its turn). */
export function writeRows(file: string, sql: string, ...params: unknown[]): void {
  const db = new Database(file);
  try {
    db.prepare(sql).run(...params);
  } finally {
    db.close();
  }
}

/** Reads the service's SQLite file directly (WAL: a second, read-only connection is fine). */
export function readRows<T>(file: string, sql: string, ...params: unknown[]): T[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}
