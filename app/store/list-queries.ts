/**
 * The list queries, built once for both stores from the filters a caller gave: the statement (named
 * `@parameters`, as both stores' repositories write them) and its values. Its text depends only on which
 * filters are present, so a store may prepare each shape once.
 */

export interface ListFilter {
  state?: string | undefined;
  name?: string | undefined;
  owner?: string | undefined;
  /** Every one must match: the key present, with the value when one is given. */
  tags?: readonly { key: string; value?: string | undefined }[] | undefined;
  includeTerminated: boolean;
  /** Only rows older than this row (the cursor). */
  beforeRowId?: number | undefined;
  limit: number;
}

export interface OperationFilter {
  instanceId?: string | undefined;
  status?: string | undefined;
  kind?: string | undefined;
  actor?: string | undefined;
  clientAddress?: string | undefined;
  beforeRowId?: number | undefined;
  limit: number;
}

export interface Query {
  sql: string;
  params: Record<string, string | number>;
}

/** How each dialect reads one key of the tags column (a JSON object as text); the key is a parameter. */
const TAG_VALUE: Record<'sqlite' | 'postgres', (key: string) => string> = {
  sqlite: (key) => `json_extract(tags, '$."' || ${key} || '"')`,
  postgres: (key) => `(tags::jsonb ->> ${key})`,
};

/** Instances with an EC2 id, newest first. */
export function instancesQuery(filter: ListFilter, dialect: 'sqlite' | 'postgres' = 'sqlite'): Query {
  const where = ['instance_id IS NOT NULL'];
  const params: Record<string, string | number> = { limit: filter.limit };
  if (filter.state !== undefined) {
    where.push('state = @state');
    params.state = filter.state;
  } else if (!filter.includeTerminated) {
    where.push("state <> 'terminated'");
  }
  if (filter.name !== undefined) {
    where.push('name = @name');
    params.name = filter.name;
  }
  if (filter.owner !== undefined) {
    where.push('owner = @owner');
    params.owner = filter.owner;
  }
  (filter.tags ?? []).forEach((tag, i) => {
    params[`tagKey${i}`] = tag.key;
    if (tag.value === undefined) {
      where.push(`${TAG_VALUE[dialect](`@tagKey${i}`)} IS NOT NULL`);
    } else {
      where.push(`${TAG_VALUE[dialect](`@tagKey${i}`)} = @tagValue${i}`);
      params[`tagValue${i}`] = tag.value;
    }
  });
  if (filter.beforeRowId !== undefined) {
    where.push('row_id < @beforeRowId');
    params.beforeRowId = filter.beforeRowId;
  }
  return { sql: `SELECT * FROM instances WHERE ${where.join(' AND ')} ORDER BY row_id DESC LIMIT @limit`, params };
}

/** Operations, newest first. */
export function operationsQuery(filter: OperationFilter): Query {
  const where: string[] = [];
  const params: Record<string, string | number> = { limit: filter.limit };
  const add = (column: string, name: string, value: string | number | undefined) => {
    if (value === undefined) return;
    where.push(`${column} = @${name}`);
    params[name] = value;
  };
  add('instance_id', 'instanceId', filter.instanceId);
  add('status', 'status', filter.status);
  add('kind', 'kind', filter.kind);
  add('actor', 'actor', filter.actor);
  add('client_address', 'clientAddress', filter.clientAddress);
  if (filter.beforeRowId !== undefined) {
    where.push('row_id < @beforeRowId');
    params.beforeRowId = filter.beforeRowId;
  }
  return {
    sql: `SELECT * FROM operations ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY row_id DESC LIMIT @limit`,
    params,
  };
}
