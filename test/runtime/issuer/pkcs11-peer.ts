/**
 * TEST ONLY: another issuer process on the same SoftHSM2 token (a replica in its own pod), driven
 * over IPC by ca-rotation-pkcs11.softhsm.test.ts: `open` loads the module and opens the active
 * key (as a replica does at start), `find` asks `keyFor` (pkcs11/rotation.ts) for the key of a
 * certificate made in the token after that, and signs with it.
 */
import { randomBytes, verify, X509Certificate } from 'node:crypto';
import { systemClock } from '../../../runtime/core/clock.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import type { CaKeyPair } from '../../../runtime/issuer/ca.ts';
import { openPkcs11CaKey } from '../../../runtime/issuer/pkcs11/key.ts';
import { pkcs11Rotation } from '../../../runtime/issuer/pkcs11/rotation.ts';
import type { CaKey } from '../../../runtime/svid/ca-key.ts';

type Msg =
  | { op: 'open'; uri: string; module: string; pinFile: string; certificate: string }
  | { op: 'find'; certificate: string };

const owned: CaKey[] = [];
let keyFor: ((c: Uint8Array) => Promise<CaKeyPair | undefined>) | undefined;

process.on('message', (m: Msg) => {
  void (async () => {
    try {
      if (m.op === 'open') {
        const certificate = Buffer.from(m.certificate, 'base64');
        owned.push(await openPkcs11CaKey({ ...m, certificate }));
        keyFor = pkcs11Rotation({
          ...m,
          trustDomain: 'fleet.example',
          clock: systemClock,
          random: cryptoRandom,
          owned,
        }).keyFor;
        process.send?.({ ok: true });
        return;
      }
      const der = Buffer.from(m.certificate, 'base64');
      const pair = await (keyFor as NonNullable<typeof keyFor>)(der);
      if (pair === undefined || !('key' in pair)) {
        process.send?.({ ok: true, found: false });
        return;
      }
      const data = randomBytes(32);
      const signs = verify('sha256', data, new X509Certificate(der).publicKey, await pair.key.sign(data));
      process.send?.({ ok: true, found: true, signs });
    } catch (e) {
      process.send?.({ ok: false, error: String(e) });
    }
  })();
});
process.on('disconnect', () => {
  void Promise.all(owned.map((k) => k.close())).then(() => process.exit(0));
});
