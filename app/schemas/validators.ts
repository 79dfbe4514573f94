/**
 * Every schema is compiled exactly once, here, at module load. Two ajv instances: one strict for bodies and
 * script output, one that coerces query-string values ("5" → 5, "true" → true) for query parameters.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import {
  createInstanceRequestSchema, instanceIdParamsSchema, listInstancesQuerySchema, updateInstanceRequestSchema, usageQuerySchema,
  type CreateInstanceRequest, type InstanceIdParams, type ListInstancesQuery, type UpdateInstanceRequest, type UsageQuery,
} from './requests.js';
import { eventsQuerySchema, type EventsQuery } from './events.js';
import { createSessionRequestSchema, type CreateSessionRequest } from './session.js';
import {
  listOperationsQuerySchema, operationIdParamsSchema, type ListOperationsQuery, type OperationIdParams,
} from './operation.js';
import {
  ec2InstanceSchema, imageOutputSchema, instanceBatchOutputSchema, instanceListOutputSchema, keyPairOutputSchema, scriptErrorOutputSchema,
  scriptProgressSchema, securityGroupOutputSchema, securityGroupsOutputSchema,
  type Ec2Image, type Ec2Instance, type Ec2InstanceBatch, type Ec2InstanceList, type Ec2KeyPair, type Ec2SecurityGroup,
  type Ec2SecurityGroups, type ScriptErrorOutput, type ScriptProgress,
} from './script-outputs.js';

// ajv-formats is CommonJS with a default export; under NodeNext the callable sits on .default at type level.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

const strictAjv = new Ajv({ allErrors: true, strict: true, useDefaults: true });
addFormats(strictAjv);

const queryAjv = new Ajv({ allErrors: true, strict: true, useDefaults: true, coerceTypes: true });
addFormats(queryAjv);

export type { ErrorObject, ValidateFunction };

export const validateCreateInstanceRequest: ValidateFunction<CreateInstanceRequest> =
  strictAjv.compile<CreateInstanceRequest>(createInstanceRequestSchema);
export const validateUpdateInstanceRequest: ValidateFunction<UpdateInstanceRequest> =
  strictAjv.compile<UpdateInstanceRequest>(updateInstanceRequestSchema);
export const validateUsageQuery: ValidateFunction<UsageQuery> = queryAjv.compile<UsageQuery>(usageQuerySchema);
export const validateInstanceIdParams: ValidateFunction<InstanceIdParams> =
  strictAjv.compile<InstanceIdParams>(instanceIdParamsSchema);
export const validateListInstancesQuery: ValidateFunction<ListInstancesQuery> =
  queryAjv.compile<ListInstancesQuery>(listInstancesQuerySchema);

export const validateListOperationsQuery: ValidateFunction<ListOperationsQuery> =
  queryAjv.compile<ListOperationsQuery>(listOperationsQuerySchema);
export const validateOperationIdParams: ValidateFunction<OperationIdParams> =
  strictAjv.compile<OperationIdParams>(operationIdParamsSchema);

export const validateScriptError: ValidateFunction<ScriptErrorOutput> =
  strictAjv.compile<ScriptErrorOutput>(scriptErrorOutputSchema);
export const validateScriptProgress: ValidateFunction<ScriptProgress> =
  strictAjv.compile<ScriptProgress>(scriptProgressSchema);
export const validateEc2Instance: ValidateFunction<Ec2Instance> = strictAjv.compile<Ec2Instance>(ec2InstanceSchema);
export const validateEc2InstanceList: ValidateFunction<Ec2InstanceList> =
  strictAjv.compile<Ec2InstanceList>(instanceListOutputSchema);
export const validateEc2InstanceBatch: ValidateFunction<Ec2InstanceBatch> =
  strictAjv.compile<Ec2InstanceBatch>(instanceBatchOutputSchema);
export const validateEc2Image: ValidateFunction<Ec2Image> = strictAjv.compile<Ec2Image>(imageOutputSchema);
export const validateEc2SecurityGroup: ValidateFunction<Ec2SecurityGroup> =
  strictAjv.compile<Ec2SecurityGroup>(securityGroupOutputSchema);
export const validateEc2SecurityGroups: ValidateFunction<Ec2SecurityGroups> =
  strictAjv.compile<Ec2SecurityGroups>(securityGroupsOutputSchema);
export const validateEc2KeyPair: ValidateFunction<Ec2KeyPair> = strictAjv.compile<Ec2KeyPair>(keyPairOutputSchema);

/** ajv errors → `[{field, message}]` with JSON-pointer-ish field names ("/storage_gb", "/" for the root). */
export function describeAjvErrors(
  errors: ErrorObject[] | null | undefined,
  root = '',
): Array<{ field: string; message: string }> {
  return (errors ?? []).map((error) => {
    let field = error.instancePath;
    let message = error.message ?? 'is invalid';
    if (error.keyword === 'additionalProperties') {
      field = `${field}/${String((error.params as { additionalProperty: string }).additionalProperty)}`;
      message = 'is not an allowed field';
    } else if (error.keyword === 'required') {
      field = `${field}/${String((error.params as { missingProperty: string }).missingProperty)}`;
      message = 'is required';
    } else if (error.keyword === 'enum') {
      message = `must be one of: ${((error.params as { allowedValues: unknown[] }).allowedValues).join(', ')}`;
    }
    const joined = `${root}${field}`.replace(/^\//, '');
    return { field: joined === '' ? '(body)' : joined, message };
  });
}

export const validateEventsQuery: ValidateFunction<EventsQuery> = queryAjv.compile<EventsQuery>(eventsQuerySchema);
export const validateCreateSessionRequest: ValidateFunction<CreateSessionRequest> =
  strictAjv.compile<CreateSessionRequest>(createSessionRequestSchema);
