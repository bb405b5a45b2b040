/**
 * Coalesce the MQTT packets written to one socket during one turn of the event loop into one
 * TLS write. aedes writes every packet on its own (each delivery runs in its own
 * `setImmediate`), and mqtt-packet's cork only spans one packet, so under load every PUBLISH
 * and PUBACK became its own TLS record and its own `writev` system call. `batchWrites` keeps
 * the socket corked from its first packet until a `setImmediate` that runs after the deliveries
 * already queued, then uncorks once: Node's TLS layer encrypts the buffered packets together.
 * Nothing waits on time: the flush is the next check phase of the event loop. `end()` flushes on
 * its own; `destroy()` discards unsent data exactly as before.
 *
 * @example
 * ```ts
 * server.on('secureConnection', (socket) => { batchWrites(socket); broker.handle(socket); });
 * ```
 */
import type { Socket } from 'node:net';

interface Batched extends Socket {
  /** True while this socket holds the extra cork of the current batch. */
  _edgewardBatch?: boolean;
}

const corked: Batched[] = [];
let scheduled = false;

function flush(): void {
  scheduled = false;
  const sockets = corked.splice(0);
  for (const s of sockets) {
    s._edgewardBatch = false;
    s.uncork();
  }
}

/** Replaces `cork` on batched sockets: the first cork of a turn takes one more, released by `flush`. */
function batchedCork(this: Batched): void {
  const cork = Object.getPrototypeOf(this).cork as (this: Socket) => void;
  if (this._edgewardBatch !== true && !this.destroyed) {
    this._edgewardBatch = true;
    cork.call(this);
    corked.push(this);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  }
  cork.call(this);
}

/** Make `socket` coalesce the packets written to it within one event-loop turn. */
export function batchWrites(socket: Socket): void {
  (socket as Batched).cork = batchedCork;
}
