/** A Server-Sent Events client for tests: reads a real stream over HTTP and keeps every frame it parsed. */
import { request } from 'node:http';
import { until } from './lifecycle.js';

export interface SseFrame {
  event: string;
  id: string | undefined;
  data: any;
}

export interface SseClient {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The body when the server refused (not a stream). */
  body: string;
  frames: SseFrame[];
  comments: string[];
  /** Resolves when the server ended the stream. */
  ended: Promise<void>;
  /** Waits (on frames arriving, not on time) until a frame passes `match`; returns it. */
  next(what: string, match: (frame: SseFrame) => boolean): Promise<SseFrame>;
  close(): void;
}

export function openSse(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      let buffer = '';
      let endedResolve!: () => void;
      const client: SseClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        body: '',
        frames: [],
        comments: [],
        ended: new Promise<void>((r) => (endedResolve = r)),
        async next(what, match) {
          let found: SseFrame | undefined;
          await until(what, () => (found = client.frames.find(match)) !== undefined);
          return found as SseFrame;
        },
        close: () => req.destroy(),
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (client.status !== 200) {
          client.body += chunk;
          return;
        }
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const frame: Partial<SseFrame> & { dataLines: string[] } = { dataLines: [] };
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) client.comments.push(line.slice(1).trim());
            else if (line.startsWith('event: ')) frame.event = line.slice(7);
            else if (line.startsWith('id: ')) frame.id = line.slice(4);
            else if (line.startsWith('data: ')) frame.dataLines.push(line.slice(6));
          }
          if (frame.event !== undefined) {
            client.frames.push({ event: frame.event, id: frame.id, data: JSON.parse(frame.dataLines.join('\n')) });
          }
        }
      });
      res.on('end', () => endedResolve());
      res.on('close', () => endedResolve());
      res.on('error', () => endedResolve());
      if (client.status !== 200) res.on('end', () => resolve(client));
      else resolve(client);
    });
    req.on('error', reject);
    req.end();
  });
}
