/**
 * One raw EST request to the enrollment listener (node:https, no verification of the gateway:
 * the tests aim at the server's answers), for status codes, headers and bodies as they are.
 */
import { request } from 'node:https';

export interface EstAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

export interface EstCallOptions {
  readonly method?: 'GET' | 'POST' | 'PUT';
  /** DER (sent base64 in 64-column lines) or a string sent as is. */
  readonly body?: Uint8Array | string;
  readonly basic?: readonly [string, string];
  readonly contentType?: string;
  readonly headers?: Record<string, string>;
  /** TLS client certificate (PEM chain) and key (PEM). */
  readonly cert?: string;
  readonly key?: string;
}

export function estCall(port: number, op: string, o: EstCallOptions = {}): Promise<EstAnswer> {
  const body =
    o.body === undefined
      ? undefined
      : typeof o.body === 'string'
        ? o.body
        : `${(
            Buffer.from(o.body)
              .toString('base64')
              .match(/.{1,64}/g) as string[]
          ).join('\n')}\n`;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: o.method ?? 'POST',
        path: op.startsWith('/') ? op : `/.well-known/est/${op}`,
        rejectUnauthorized: false,
        agent: false,
        headers: {
          ...(body === undefined ? {} : { 'Content-Type': o.contentType ?? 'application/pkcs10' }),
          ...(o.basic === undefined
            ? {}
            : { Authorization: `Basic ${Buffer.from(`${o.basic[0]}:${o.basic[1]}`).toString('base64')}` }),
          ...o.headers,
        },
        ...(o.cert === undefined ? {} : { cert: o.cert, key: o.key }),
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.once('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(parts).toString(),
          }),
        );
        res.once('error', reject);
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}
