/** The event stream: every recorded change, as Server-Sent Events. */
import { EVENT_TYPE_NAMES, eventsQuerySchema, streamEventSchema, streamResetSchema } from '../../schemas/events.js';
import { problem, queryParameters, ref, type Doc } from './shared.js';

export const eventPaths: Doc = {
  '/events': {
    get: {
      operationId: 'streamEvents',
      summary: 'Every recorded change, live (Server-Sent Events)',
      description: [
        'A `text/event-stream` that stays open. Each change is one event: `id:` (only grows), `event:` its type',
        `(${EVENT_TYPE_NAMES.join(', ')}) and \`data:\` a StreamEvent. The stream starts with \`stream.ready\``,
        '(`data: {"last_event_id": N, "clients": C}`, `id: N`); a comment line `: heartbeat` comes every',
        'EVENT_HEARTBEAT_S. Resume with the `Last-Event-ID` header (browsers send it on reconnect) or',
        '`?last_event_id=`: exactly the events after it follow, also across restarts and replicas. An id older than',
        'EVENT_RETENTION_HOURS (or never recorded) gets `stream.reset` (a StreamReset: the current state), then',
        'the live stream. A client that does not read is dropped. Viewer tokens may read it.',
      ].join(' '),
      parameters: [
        ...queryParameters(eventsQuerySchema),
        { name: 'Last-Event-ID', in: 'header', required: false, schema: { type: 'string', pattern: '^[0-9]{1,15}$' } },
      ],
      responses: {
        '200': {
          description: 'The stream; each `data:` is a StreamEvent (or a StreamReset for `stream.reset`)',
          content: { 'text/event-stream': { schema: { type: 'string' }, itemSchema: { oneOf: [ref('StreamEvent'), ref('StreamReset')] } } },
        },
        '400': problem('Invalid query or Last-Event-ID'),
        '503': problem('MAX_EVENT_CLIENTS streams are open, or the server is shutting down', { 'Retry-After': { schema: { type: 'integer' } } }),
      },
    },
  },
};

export const eventSchemas: Doc = { StreamEvent: streamEventSchema, StreamReset: streamResetSchema };
