/**
 * The CLI side of the agent's admin socket: HTTP over a Unix socket (LevelDB allows one process,
 * so the CLI asks the running agent). `POST /v1/device-tokens` with `{ id, ttlMs }` answers
 * `{ token, expiresAt }`.
 */
import { request } from 'node:http';
import { TransportError } from '../errors.ts';

export function createDeviceToken(
  socketPath: string,
  body: { id: string; ttlMs: number },
): Promise<{ token: string; expiresAt: number }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request(
      {
        socketPath,
        method: 'POST',
        path: '/v1/device-tokens',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        timeout: 10_000,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let json: { token?: unknown; expiresAt?: unknown; error?: { code?: unknown; message?: unknown } };
          try {
            json = JSON.parse(text);
          } catch {
            json = {};
          }
          if (res.statusCode === 200 || res.statusCode === 201) {
            if (typeof json.token === 'string' && typeof json.expiresAt === 'number') {
              resolve({ token: json.token, expiresAt: json.expiresAt });
              return;
            }
          }
          const why = json.error
            ? `${String(json.error.code)}: ${String(json.error.message)}`
            : text.slice(0, 200);
          reject(new TransportError('ERR_ADMIN_REFUSED', `the agent answered ${res.statusCode}: ${why}`));
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) =>
      reject(
        new TransportError(
          'ERR_ADMIN_UNREACHABLE',
          `cannot reach the agent at ${socketPath}: ${err.message} (is \`edgeward agent\` running? --socket PATH)`,
        ),
      ),
    );
    req.end(payload);
  });
}
