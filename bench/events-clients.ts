/**
 * The client side of `bench/events.ts`, run as a child process so that the server's and
 * the clients' sockets count against two processes' file-descriptor limits. It opens the
 * sockets it is told to, and for each event frame records the delivery latency (wall clock
 * now − the publisher's `t0`, both on this machine) and whether the frame's tenant is the
 * socket's own.
 */
import WebSocket from 'ws';

interface Target {
  readonly url: string;
  readonly token?: string;
  readonly tenantId: string;
}

type Command =
  | { op: 'open'; side: string; targets: Target[] }
  | { op: 'close'; side: string }
  | { op: 'collect' }
  | { op: 'exit' };

const wall = () => performance.timeOrigin + performance.now();
const sockets = new Map<string, WebSocket[]>();
/** Latencies by side and event id, and frames of another tenant. */
const latencies: Record<string, number[]> = {};
let crossTenant = 0;
let received = 0;
const perEvent = new Map<string, number>();

function open(side: string, target: Target): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target.url, target.token ? { headers: { authorization: `Bearer ${target.token}` } } : {});
    ws.on('error', reject);
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString());
      if (message.type === 'ready') {
        resolve(ws);
        return;
      }
      if (message.type !== 'event') return;
      const event = message.event;
      if (event.tenantId !== target.tenantId) crossTenant++;
      const t0 = event.payload?.t0;
      if (typeof t0 === 'number') {
        // The baseline's frames say which run they belong to; Tenantry's go by socket.
        const phase: string = typeof event.payload?.phase === 'string' ? event.payload.phase : side;
        latencies[phase] ??= [];
        latencies[phase].push(wall() - t0);
      }
      received++;
      const key = `${side}:${event.payload?.n}`;
      const count = (perEvent.get(key) ?? 0) + 1;
      perEvent.set(key, count);
      process.send?.({ op: 'got', key, count });
    });
  });
}

process.on('message', async (command: Command) => {
  if (command.op === 'open') {
    const list: WebSocket[] = [];
    // A few at a time: thousands of simultaneous handshakes only measure the accept queue.
    for (let i = 0; i < command.targets.length; i += 50) {
      list.push(...(await Promise.all(command.targets.slice(i, i + 50).map((t) => open(command.side, t)))));
    }
    sockets.set(command.side, list);
    process.send?.({ op: 'opened', side: command.side, count: list.length });
  } else if (command.op === 'close') {
    for (const ws of sockets.get(command.side) ?? []) ws.terminate();
    sockets.delete(command.side);
    process.send?.({ op: 'closed', side: command.side });
  } else if (command.op === 'collect') {
    process.send?.({ op: 'collected', latencies, crossTenant, received });
  } else if (command.op === 'exit') {
    process.exit(0);
  }
});
process.send?.({ op: 'started' });
