/**
 * `npm run docs:config`: writes README.md's configuration table (between its CONFIGURATION markers) and
 * `.env.example` from app/config-docs.ts, so the two never tell different stories. With `--check` it
 * writes nothing and exits 1 naming each file that is out of date (CI runs it); `--root DIR` works on the
 * README.md and .env.example of another folder (the tests use it).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CONFIG_DOCS, type ConfigDocRow } from '../app/config-docs.js';

export const README = 'README.md';
export const ENV_EXAMPLE = '.env.example';
export const START_MARKER = '<!-- CONFIGURATION -->';
export const END_MARKER = '<!-- /CONFIGURATION -->';
const ENV_WIDTH = 100;

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function variableCell(row: ConfigDocRow): string {
  const names = row.label !== undefined ? [row.label] : row.variables.map((variable) => variable.name);
  return names.map((name) => `\`${name}\``).join(', ');
}

function tableCell(markdown: string): string {
  return markdown.replaceAll('|', '\\|');
}

/** The README's region between the markers, markers excluded. */
export function renderReadmeTable(rows: readonly ConfigDocRow[] = CONFIG_DOCS): string {
  const lines = [
    '<!-- Written by `npm run docs:config` from app/config-docs.ts (as is .env.example): edit it there. -->',
    '| Variable | Default | Meaning |',
    '|---|---|---|',
    ...rows.map((row) => `| ${variableCell(row)} | ${tableCell(row.default)} | ${tableCell(row.meaning)} |`),
  ];
  return `${lines.join('\n')}\n`;
}

/** README.md with its region replaced; throws when the markers are missing. */
export function withReadmeTable(readme: string, table: string = renderReadmeTable()): string {
  const start = readme.indexOf(`${START_MARKER}\n`);
  const end = readme.indexOf(END_MARKER, start);
  if (start === -1 || end === -1) throw new Error(`${README} has no ${START_MARKER} … ${END_MARKER} region`);
  return readme.slice(0, start + START_MARKER.length + 1) + table + readme.slice(end);
}

/** Markdown of the table as plain text for a comment: code spans unquoted, README links named. */
function plain(markdown: string): string {
  return markdown.replace(/\[([^\]]+)\]\(#[^)]+\)/g, '$1 in README.md').replaceAll('`', '');
}

function commentLines(text: string): string[] {
  const lines: string[] = [];
  let line = '#';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '#' && line.length + 1 + word.length > ENV_WIDTH) {
      lines.push(line);
      line = '#';
    }
    line += ` ${word}`;
  }
  lines.push(line);
  return lines;
}

export function renderEnvExample(rows: readonly ConfigDocRow[] = CONFIG_DOCS): string {
  const blocks: string[][] = [[
    ...commentLines(
      "ec2-creator's configuration, to start a .env from: copy this file to .env (which git ignores) and "
      + 'uncomment what you change. Every variable is here, commented out, with its default where the '
      + 'default is a plain value, so a copy changes nothing; an empty value counts as unset. The server '
      + 'and the sandbox read .env only, never this file.',
    ),
    ...commentLines('Written by `npm run docs:config` from app/config-docs.ts (as is README.md\'s table): edit it there.'),
  ]];
  for (const row of rows) {
    const block = commentLines(`${plain(row.meaning)}.`);
    const shown = row.variables.map((variable) => variable.value).join(', ');
    if (row.variables.length > 0 && plain(row.default) !== shown) block.push(`# Default: ${plain(row.default)}`);
    for (const variable of row.variables) {
      if (variable.secret) block.push(`# ${variable.name} is a secret: give it a value in .env only.`);
      if (variable.example !== undefined) block.push(`# For example ${variable.name}=${variable.example}`);
    }
    for (const variable of row.variables) block.push(`# ${variable.name}=${variable.value}`);
    blocks.push(block);
  }
  return `${blocks.map((block) => block.join('\n')).join('\n\n')}\n`;
}

export interface StaleFile {
  file: string;
  reason: string;
}

/** The files under `root` that differ from what the generator writes (a missing one counts). */
export function staleFiles(root: string = repoRoot): StaleFile[] {
  const stale: StaleFile[] = [];
  const readmePath = path.join(root, README);
  if (!existsSync(readmePath)) {
    stale.push({ file: README, reason: 'missing' });
  } else {
    const readme = readFileSync(readmePath, 'utf8');
    try {
      if (withReadmeTable(readme) !== readme) stale.push({ file: README, reason: 'its configuration table differs' });
    } catch (error) {
      stale.push({ file: README, reason: (error as Error).message });
    }
  }
  const envPath = path.join(root, ENV_EXAMPLE);
  if (!existsSync(envPath)) {
    stale.push({ file: ENV_EXAMPLE, reason: 'missing' });
  } else if (readFileSync(envPath, 'utf8') !== renderEnvExample()) {
    stale.push({ file: ENV_EXAMPLE, reason: 'it differs' });
  }
  return stale;
}

/** Writes both files under `root`; returns the ones that changed. */
export function writeDocs(root: string = repoRoot): string[] {
  const changed: string[] = [];
  const readmePath = path.join(root, README);
  const readme = readFileSync(readmePath, 'utf8');
  const updated = withReadmeTable(readme);
  if (updated !== readme) {
    writeFileSync(readmePath, updated);
    changed.push(README);
  }
  const envPath = path.join(root, ENV_EXAMPLE);
  const env = renderEnvExample();
  if (!existsSync(envPath) || readFileSync(envPath, 'utf8') !== env) {
    writeFileSync(envPath, env);
    changed.push(ENV_EXAMPLE);
  }
  return changed;
}

function main(argv: string[]): number {
  let check = false;
  let root = repoRoot;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--check') check = true;
    else if (arg === '--root' && argv[i + 1] !== undefined) root = path.resolve(argv[(i += 1)]!);
    else {
      process.stderr.write('usage: tsx scripts/docs-config.ts [--check] [--root DIR]\n');
      return 2;
    }
  }
  if (check) {
    const stale = staleFiles(root);
    for (const { file, reason } of stale) {
      process.stderr.write(`docs:config: ${file} is out of date with app/config-docs.ts (${reason}): run npm run docs:config\n`);
    }
    if (stale.length === 0) process.stdout.write(`docs:config: ${README} and ${ENV_EXAMPLE} match app/config-docs.ts\n`);
    return stale.length === 0 ? 0 : 1;
  }
  const changed = writeDocs(root);
  process.stdout.write(changed.length === 0 ? 'docs:config: nothing to change\n' : `docs:config: wrote ${changed.join(', ')}\n`);
  return 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
