/**
 * Talking to a running agent over its admin socket (`edgeward status`, and the transport's
 * `edgeward device token create`). `findAdminSocket` looks for `.edgeward/admin.sock` from the
 * current directory upwards, so `edgeward status` finds the `npm start` agent without flags.
 *
 * @example
 * ```ts
 * const sock = findAdminSocket(process.cwd(), process.env);
 * const status = await adminRequest(sock, 'GET', '/v1/status');
 * ```
 */
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { AgentError } from '../errors.ts';

export const ADMIN_SOCKET_NAME = 'admin.sock';
export const DEV_DATA_DIR = '.edgeward';

/** `$EDGEWARD_ADMIN_SOCKET`, else the nearest `.edgeward/admin.sock` from `cwd` upwards. */
export function findAdminSocket(cwd: string, env: Readonly<Record<string, string | undefined>> = {}): string {
  const fromEnv = env.EDGEWARD_ADMIN_SOCKET;
  if (fromEnv !== undefined && fromEnv !== '') return resolve(cwd, fromEnv);
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const candidate = join(dir, DEV_DATA_DIR, ADMIN_SOCKET_NAME);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) break;
  }
  throw new AgentError(
    'ERR_ADMIN_UNREACHABLE',
    `no running agent found: no ${DEV_DATA_DIR}/${ADMIN_SOCKET_NAME} from ${cwd} upwards (use --socket PATH)`,
  );
}

export async function adminRequest<T = unknown>(
  socketPath: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<T> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const { status, text, type } = await new Promise<{ status: number; text: string; type: string }>(
    (res, rej) => {
      const req = request(
        {
          socketPath,
          method,
          path,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
        },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () =>
            res({
              status: r.statusCode ?? 0,
              text: Buffer.concat(chunks).toString('utf8'),
              type: r.headers['content-type'] ?? '',
            }),
          );
          r.on('error', rej);
        },
      );
      req.on('error', (err) =>
        rej(
          new AgentError(
            'ERR_ADMIN_UNREACHABLE',
            `agent not answering on ${socketPath}: ${err.message}`,
            {},
            { cause: err },
          ),
        ),
      );
      req.end(payload);
    },
  );
  const parsed = type.startsWith('application/json') ? (JSON.parse(text) as unknown) : text;
  if (status >= 400) {
    const e = (parsed as { error?: { code?: string; message?: string } }).error;
    throw new AgentError('ERR_ADMIN_REQUEST', `${e?.code ?? status}: ${e?.message ?? text}`, {
      status,
      remoteCode: e?.code,
    });
  }
  return parsed as T;
}
