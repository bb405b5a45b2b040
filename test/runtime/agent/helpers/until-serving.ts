/**
 * Await the moment a running agent serves an identity: `status().serving` is "the SVID source
 * holds a live identity", which the source announces through `onChange`, so this waits for that
 * event instead of polling. Fails after `timeoutMs` with the upstream state, to say why.
 */
import type { RunningAgent } from '../../../../runtime/agent/run.ts';

export function untilServing(r: RunningAgent, timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (r.agent.status().serving) return resolve();
    const timer = setTimeout(() => {
      off();
      reject(
        new Error(`agent not serving after ${timeoutMs} ms: ${JSON.stringify(r.agent.status().upstream)}`),
      );
    }, timeoutMs);
    const off = r.agent.svidSource.onChange(() => {
      if (!r.agent.status().serving) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}
