/**
 * The list queries, built once for both stores from the filters a caller gave: the statement (named
 * `@parameters`, as both stores' repositories write them) and its values. Its text depends only on which
 * filters are present, so a store may prepare each shape once.
 */

export interface ListFilter {
  state?: string | undefined;
  name?: string | undefined;
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

/** Instances with an EC2 id, newest first. */
export function instancesQuery(filter: ListFilter): Query {
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
