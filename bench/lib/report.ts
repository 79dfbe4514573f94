/**
 * Figures, their goals, the printed table and the JSON file two runs are compared by. A figure's `id` is
 * stable across runs; `value` is a plain number in `unit`, so a later run (or a script) can diff them.
 */
type Comparison = '<=' | '<' | '>=';

export interface Goal {
  compare: Comparison;
  limit: number;
  /** Why the limit is what it is, when the table alone would not say (e.g. a figure of the old system). */
  note?: string;
}

export interface Figure {
  id: string;
  /** The goal this figure checks (1-5), or 0 for the targets the earlier benchmarks set. */
  goal_number: number;
  label: string;
  value: number | null;
  unit: string;
  /** The measured value as printed (may add context, e.g. the wait calls subtracted). */
  shown: string;
  goal: Goal | null;
  /** null: reported, no goal; false also when the figure could not be measured. */
  met: boolean | null;
  detail?: Record<string, unknown>;
}

function meets(value: number, goal: Goal): boolean {
  switch (goal.compare) {
    case '<=':
      return value <= goal.limit;
    case '<':
      return value < goal.limit;
    case '>=':
      return value >= goal.limit;
  }
}

const SYMBOL: Record<Comparison, string> = { '<=': '≤', '<': '<', '>=': '≥' };

function goalText(goal: Goal | null, unit: string): string {
  if (!goal) return '—';
  const shownUnit = unit === 'ratio' || unit === 'calls' ? '' : ` ${unit}`;
  return `${SYMBOL[goal.compare]} ${goal.limit.toLocaleString('en-US')}${shownUnit}`;
}

/** A figure from a measured value; `shown` defaults to the value and its unit. */
export function figure(options: {
  id: string;
  goalNumber: number;
  label: string;
  value: number;
  unit: string;
  goal: Goal | null;
  shown?: string;
  detail?: Record<string, unknown>;
  /** Extra conditions the measurement itself must satisfy to count (e.g. every answer was a 200). */
  valid?: { ok: boolean; why: string };
}): Figure {
  const valid = options.valid ?? { ok: true, why: '' };
  const unitShown = options.unit === 'calls' || options.unit === 'ratio' ? '' : ` ${options.unit}`;
  const shown = options.shown ?? `${options.value.toLocaleString('en-US')}${unitShown}`;
  return {
    id: options.id,
    goal_number: options.goalNumber,
    label: options.label,
    value: options.value,
    unit: options.unit,
    shown: valid.ok ? shown : `${shown} (invalid: ${valid.why})`,
    goal: options.goal,
    met: options.goal === null ? null : valid.ok && meets(options.value, options.goal),
    ...(options.detail ? { detail: options.detail } : {}),
  };
}

/** A figure that could not be measured: its part of the run failed. It counts as a missed goal. */
export function failedFigure(id: string, goalNumber: number, label: string, error: unknown): Figure {
  const message = error instanceof Error ? error.message : String(error);
  return {
    id, goal_number: goalNumber, label, value: null, unit: '', shown: `error: ${message.split('\n')[0]?.slice(0, 160)}`,
    goal: null, met: false, detail: { error: message },
  };
}

function pad(text: string, width: number): string {
  // Table cells are measured in code points so that ≤ and — line up.
  return text + ' '.repeat(Math.max(0, width - [...text].length));
}

/** The table "figure | measured | goal | met?", one row per figure, with `previous` values when comparing. */
export function table(figures: readonly Figure[], previous?: ReadonlyMap<string, Figure>): string {
  const header = ['#', 'figure', 'measured', 'goal', 'met?', ...(previous ? ['previous run'] : [])];
  const rows = figures.map((f) => [
    f.goal_number === 0 ? '-' : String(f.goal_number),
    f.label,
    f.shown,
    goalText(f.goal, f.unit),
    f.met === null ? '—' : f.met ? 'yes' : 'NO',
    ...(previous ? [previous.get(f.id)?.shown ?? '(not measured)'] : []),
  ]);
  const widths = header.map((title, column) => Math.max([...title].length, ...rows.map((row) => [...(row[column] ?? '')].length)));
  const line = (cells: string[]): string => cells.map((cell, column) => pad(cell, widths[column] ?? 0)).join(' | ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}
