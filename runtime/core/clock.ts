/**
 * Time as a dependency. Pure checks take `now` as a parameter; schedulers take a `Clock`.
 * The composition root builds `systemClock`; tests use `VirtualClock` from `sim/clock`.
 */

/** A scheduled callback that can be cancelled; cancelling twice is harmless. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch, as the wall clock says (may jump). */
  now(): number;
  /** Milliseconds from an arbitrary origin that never jumps (only differences mean anything). */
  monotonic(): number;
  /** Run `fn` once after `delayMs`. `name` labels the timer for diagnostics and tests. */
  setTimer(name: string, delayMs: number, fn: () => void): Timer;
}

/** The real wall clock and Node timers. Timers are unref'd so they never hold the process open. */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimer(_name, delayMs, fn) {
    // Node timers overflow past 2^31-1 ms (~24.8 days): re-arm in steps.
    const max = 0x7fffffff;
    let handle: NodeJS.Timeout;
    const arm = (remaining: number): void => {
      handle = setTimeout(
        () => (remaining > max ? arm(remaining - max) : fn()),
        Math.max(0, Math.min(remaining, max)),
      );
      handle.unref();
    };
    arm(delayMs);
    return { cancel: () => clearTimeout(handle) };
  },
};

/** Resolves after `delayMs` on `clock`, or rejects with the signal's reason when aborted. */
export function sleep(clock: Clock, delayMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = clock.setTimer('sleep', delayMs, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
