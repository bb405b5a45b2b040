/**
 * TEST ONLY: start `broker-child.ts` on a journal directory, read its `PORT` and `LOG` lines,
 * and kill it with SIGKILL.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BrokerLimits } from '../../../transport/mqtt/limits.ts';
import type { Policy } from '../../../transport/policy/schema.ts';
import type { TestPki } from '../../helpers/pki.ts';
import type { ChildMaterial } from './broker-child.ts';

export type LogLine = { level: string; msg: string; [field: string]: unknown };

export interface BrokerChild {
  readonly port: number;
  readonly process: ChildProcess;
  readonly logs: LogLine[];
  /** Resolves with the first log line (seen or to come) that `pred` accepts. */
  waitLog(pred: (l: LogLine) => boolean): Promise<LogLine>;
  kill9(): Promise<void>;
}

export function writeMaterial(
  pki: TestPki,
  dir: string,
  opts: { limits?: BrokerLimits; policy?: Policy } = {},
): string {
  const m: ChildMaterial = {
    trustDomain: pki.trustDomain,
    gatewayId: pki.gateway.id,
    svidChain: pki.gateway.chain.map((c) => c.toString()),
    svidKey: pki.gateway.pem.key,
    caChain: [pki.deviceCa.cert.toString()],
    caKey: pki.deviceCa.pem.key,
    roots: [pki.root.cert.toString()],
    ...opts,
  };
  const file = join(dir, 'material.json');
  writeFileSync(file, JSON.stringify(m), { mode: 0o600 });
  return file;
}

export function startChild(materialFile: string, dir: string): Promise<BrokerChild> {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', join(import.meta.dirname, 'broker-child.ts'), materialFile, dir],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const logs: LogLine[] = [];
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let buf = '';
  return new Promise((resolve, reject) => {
    proc.once('exit', (code, signal) => reject(new Error(`broker child exited early: ${code} ${signal}`)));
    proc.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
        const text = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (text.startsWith('PORT ')) {
          const port = Number(text.slice(5));
          resolve({
            port,
            process: proc,
            logs,
            waitLog(pred) {
              const seen = logs.find(pred);
              if (seen !== undefined) return Promise.resolve(seen);
              return new Promise((res) => waiters.push({ pred, resolve: res }));
            },
            kill9() {
              const gone = new Promise<void>((r) => proc.once('exit', () => r()));
              proc.kill('SIGKILL');
              return gone;
            },
          });
        } else if (text.startsWith('LOG ')) {
          const l = JSON.parse(text.slice(4)) as LogLine;
          logs.push(l);
          if (process.env.DEBUG_CHILD) console.error(text);
          for (const w of waiters.splice(0)) {
            if (w.pred(l)) w.resolve(l);
            else waiters.push(w);
          }
        }
      }
    });
  });
}
