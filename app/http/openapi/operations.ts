/** Operations: the record of every change and sync, to follow asynchronous requests. */
import { listOperationsQuerySchema, operationIdParamsSchema, operationListSchema, operationSchema } from '../../schemas/operation.js';
import { json, problem, queryParameters, type Doc } from './shared.js';

export const operationPaths: Doc = {
  '/operations': {
    get: {
      operationId: 'listOperations',
      summary: 'Operations, newest first',
      parameters: queryParameters(listOperationsQuerySchema),
      responses: { '200': json('One page of operations', 'OperationList'), '400': problem('Invalid query') },
    },
  },
  '/operations/{id}': {
    get: {
      operationId: 'getOperation',
      summary: 'One operation',
      parameters: [{ name: 'id', in: 'path', required: true, schema: operationIdParamsSchema.properties.id }],
      responses: { '200': json('The operation', 'Operation'), '400': problem('Malformed id'), '404': problem('No such operation') },
    },
  },
};

export const operationSchemas: Doc = { Operation: operationSchema, OperationList: operationListSchema };
