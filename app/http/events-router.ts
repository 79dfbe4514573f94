/**
 * GET /events: Server-Sent Events of every recorded change (app/domain/event-stream.ts). Each event has
 * `id:` (resume with the Last-Event-ID header or ?last_event_id=), `event:` its type and `data:` JSON. What
 * waits for a slow client is bounded (it reads on from the store instead); one that does not read is dropped.
 */
import { Router } from 'express';
import { UnavailableError } from '../domain/errors.js';
import type { EventStream, StreamEvent, StreamReset } from '../domain/event-stream.js';
import type { Logger } from '../logger.js';
import { validateEventsQuery } from '../schemas/validators.js';
import { requestId } from './context.js';
import { methodNotAllowed } from './problems.js';
import { check } from './validate.js';

export interface EventsRouterOptions {
  stream: EventStream;
  logger: Logger;
  maxClients: number;
  heartbeatS: number;
}

/** One event as the stream writes it. */
function frame(name: string, id: number | undefined, data: unknown): string {
  return `event: ${name}\n${id === undefined ? '' : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`;
}

export function eventsRouter(options: EventsRouterOptions): Router {
  const { stream, logger } = options;
  const router = Router();
  router
    .route('/events')
    .get(async (req, res) => {
      const query = check(validateEventsQuery, { ...(req.query as object) }, 'query');
      const header = req.get('last-event-id');
      if (header !== undefined && !/^[0-9]{1,15}$/.test(header.trim())) {
        check(validateEventsQuery, { last_event_id: header }, 'Last-Event-ID header');
      }
      const resumeFrom = header !== undefined ? header.trim() : query.last_event_id;
      if (!stream.open) throw new UnavailableError('The service is shutting down; reconnect shortly', 5);
      if (stream.clients >= options.maxClients) {
        throw new UnavailableError(`${options.maxClients} event streams are open (MAX_EVENT_CLIENTS); retry later`, 10);
      }

      let ended = false;
      let heartbeat: NodeJS.Timeout | undefined;
      let unsubscribe: () => void = () => undefined;
      const finish = (why: string) => {
        if (ended) return;
        ended = true;
        if (heartbeat) clearInterval(heartbeat);
        unsubscribe();
        logger.info('event stream closed', { request_id: requestId(res), why, clients: stream.clients });
      };
      const send = (text: string) => {
        if (!ended) res.write(text);
      };
      req.on('close', () => finish('client left'));

      res.status(200);
      res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
      res.setHeader('Cache-Control', 'no-cache, no-transform');
      res.setHeader('X-Accel-Buffering', 'no'); // nginx would hold the stream back
      res.flushHeaders();
      res.write('retry: 3000\n\n');

      const subscription = await stream.subscribe(
        {
          filter: { instanceId: query.instance_id, types: query.types?.split(',') },
          deliver: (event: StreamEvent) => send(frame(event.type, event.id, event)),
          backlog: () => res.writableLength,
          onDrain: (then) => res.once('drain', then),
          // Tells the client where it stands, so that it can resume from here even before any change: after
          // what it missed, with the id reached, so the last id an EventSource keeps never goes back.
          ready: (lastEventId) => send(frame('stream.ready', lastEventId, { last_event_id: lastEventId, clients: stream.clients })),
          end: (why) => {
            if (why === 'stalled') {
              logger.warn('event stream client dropped: it does not read', { request_id: requestId(res), buffered_bytes: res.writableLength });
              finish('slow client');
              res.destroy();
              return;
            }
            finish('server shutting down');
            res.end();
          },
        },
        resumeFrom === undefined ? undefined : Number(resumeFrom),
        (reset: StreamReset) => send(frame('stream.reset', reset.newest_event_id, reset)),
      ).catch((error: unknown) => {
        logger.warn('event stream could not start', { request_id: requestId(res), error: error instanceof Error ? error.message : String(error) });
        finish('refused');
        res.end();
        return undefined;
      });
      if (!subscription) return;
      if (ended) {
        subscription.unsubscribe();
        return;
      }
      unsubscribe = () => subscription.unsubscribe();
      heartbeat = setInterval(() => send(': heartbeat\n\n'), options.heartbeatS * 1000);
      heartbeat.unref();
      logger.info('event stream opened', {
        request_id: requestId(res), from: subscription.from, instance_id: query.instance_id, types: query.types, clients: stream.clients,
      });
    })
    .all(methodNotAllowed('GET'));
  return router;
}
