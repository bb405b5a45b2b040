/**
 * TEST ONLY: the reference-value gate of an issuer, in front of the agent tests' in-memory issuer
 * (test/runtime/agent/helpers/fake-issuer.ts). `POST /v1/firmware/manifests` accepts a manifest
 * envelope only when it verifies against the vendor keys (runtime/firmware/manifest.ts); an
 * attestation finishes only when the gateway's PCR values — read from the real swtpm at that
 * moment — equal the values of a published manifest. Stands in for the quote check of the real
 * issuer until its manifests speak the shared envelope format (see the firmware-hooks README).
 */
import type { KeyObject } from 'node:crypto';
import { AgentError } from '../../../runtime/errors.ts';
import { type FirmwareManifest, verifyManifest } from '../../../runtime/firmware/manifest.ts';
import { PATHS } from '../../../runtime/upstream/protocol.ts';
import type { Upstream, UpstreamEndpoint } from '../../../runtime/upstream/types.ts';

export class ReferenceGate {
  readonly published: FirmwareManifest[] = [];
  refusals = 0;
  readonly #vendorKeys: readonly KeyObject[];
  readonly #measured: (m: FirmwareManifest) => Promise<Record<number, string>>;

  constructor(
    vendorKeys: readonly KeyObject[],
    measured: (m: FirmwareManifest) => Promise<Record<number, string>>,
  ) {
    this.#vendorKeys = vendorKeys;
    this.#measured = measured;
  }

  /** Accept (or refuse, as the issuer would) a manifest envelope. */
  publish(text: string): void {
    try {
      this.published.push(verifyManifest(text, this.#vendorKeys));
    } catch (cause) {
      throw new AgentError('ERR_UPSTREAM_REJECTED', 'manifest refused', { status: 400 }, { cause });
    }
  }

  async #matches(): Promise<boolean> {
    for (const m of this.published) {
      const live = await this.#measured(m);
      if (Object.entries(m.pcrs).every(([i, v]) => live[Number(i)] === v)) return true;
    }
    return false;
  }

  wrap(inner: Upstream): Upstream {
    const endpoints = inner.endpoints.map(
      (ep): UpstreamEndpoint => ({
        url: ep.url,
        get: (path, o) => ep.get(path, o),
        post: async <T>(
          path: string,
          body: unknown,
          o?: Parameters<UpstreamEndpoint['post']>[2],
        ): Promise<T> => {
          if (path === PATHS.manifests) {
            this.publish((body as { manifest: string }).manifest);
            return { accepted: true } as T;
          }
          if (path === PATHS.attestFinish && !(await this.#matches())) {
            this.refusals++;
            throw new AgentError('ERR_UPSTREAM_REFUSED', 'PCR values match no firmware', {
              status: 403,
              remoteCode: 'ERR_ISSUER_PCR_MISMATCH',
            });
          }
          return ep.post<T>(path, body, o);
        },
      }),
    );
    return { endpoints, close: () => inner.close() };
  }
}
