/**
 * A PKCS#11 module (`ca.pkcs11.module`, e.g. SoftHSM2's libsofthsm2.so) loaded through the
 * `pkcs11js` binding. The binding is an optional dependency (a native addon built by node-gyp):
 * it is imported only here, only when a `pkcs11:` key is configured, so an issuer with file keys
 * never loads it and an install where it could not build still runs. One module is loaded and
 * initialised once per process and path (C_Initialize may run once per process), shared by the
 * keys on it (`ca.key`, `ca.next.key`) and finalised when the last is closed.
 *
 * C_Sign runs on libuv's thread pool (`C_SignAsync`), never on the event loop. `track` counts
 * those calls, so that `reinitialize` (after a token went away: SoftHSM2 answers
 * CKR_GENERAL_ERROR to every slot query until C_Finalize/C_Initialize) never finalises the
 * module under a signature in flight.
 *
 * @example
 * ```ts
 * const m = await Pkcs11Module.open('/usr/lib/softhsm/libsofthsm2.so');
 * const slots = m.api.C_GetSlotList(true);  ...  await m.release();
 * ```
 */
import { IssuerError } from '../../errors.ts';

/** Standard PKCS#11 (Cryptoki 2.40) constants this backend uses. */
export const CK = {
  CKF_OS_LOCKING_OK: 0x2,
  CKF_RW_SESSION: 0x2,
  CKF_SERIAL_SESSION: 0x4,
  CKU_USER: 1,
  CKO_PUBLIC_KEY: 2,
  CKO_PRIVATE_KEY: 3,
  CKK_EC: 3,
  CKA_CLASS: 0x0,
  CKA_TOKEN: 0x1,
  CKA_PRIVATE: 0x2,
  CKA_LABEL: 0x3,
  CKA_KEY_TYPE: 0x100,
  CKA_ID: 0x102,
  CKA_SENSITIVE: 0x103,
  CKA_SIGN: 0x108,
  CKA_VERIFY: 0x10a,
  CKA_EXTRACTABLE: 0x162,
  CKA_EC_PARAMS: 0x180,
  CKA_EC_POINT: 0x181,
  CKM_EC_KEY_PAIR_GEN: 0x1040,
  CKM_ECDSA: 0x1041,
} as const;

export type Handle = Buffer;
export interface Attribute {
  type: number;
  value?: number | boolean | string | Buffer;
}
export interface TokenInfo {
  label: string;
  manufacturerID: string;
  model: string;
  serialNumber: string;
}

/** The part of pkcs11js's `PKCS11` class this backend calls. */
export interface Pkcs11Api {
  load(path: string): void;
  close(): void;
  C_Initialize(options?: { flags?: number }): void;
  C_Finalize(): void;
  C_GetSlotList(tokenPresent?: boolean): Handle[];
  C_GetTokenInfo(slot: Handle): TokenInfo;
  C_OpenSession(slot: Handle, flags: number): Handle;
  C_CloseSession(session: Handle): void;
  C_Login(session: Handle, userType: number, pin?: string): void;
  C_FindObjectsInit(session: Handle, template: Attribute[]): void;
  C_FindObjects(session: Handle, maxObjectCount: number): Handle[];
  C_FindObjectsFinal(session: Handle): void;
  C_GetAttributeValue(session: Handle, object: Handle, template: Attribute[]): Attribute[];
  C_SignInit(session: Handle, mechanism: { mechanism: number }, key: Handle): void;
  C_SignAsync(session: Handle, data: Buffer, out: Buffer): Promise<Buffer>;
  C_GenerateKeyPairAsync(
    session: Handle,
    mechanism: { mechanism: number },
    publicTemplate: Attribute[],
    privateTemplate: Attribute[],
  ): Promise<{ privateKey: Handle; publicKey: Handle }>;
}

/** The CKR_ name of a binding error (`CKR_PIN_INCORRECT`), or undefined for another failure. */
export function ckr(err: unknown): string | undefined {
  const m = err instanceof Error ? /CKR_[A-Z_]+/.exec(err.message) : null;
  return m?.[0];
}

/** The binding's message for a message of ours: the CKR_ name or the error's text. */
export const why = (err: unknown): string => ckr(err) ?? (err instanceof Error ? err.message : String(err));

let binding: Promise<{ PKCS11: new () => Pkcs11Api }> | undefined;

/** Import the optional `pkcs11js` binding (once); ERR_ISSUER_PKCS11_MODULE when it is not installed. */
function loadBinding(): Promise<{ PKCS11: new () => Pkcs11Api }> {
  binding ??= (async () => {
    // A variable specifier: the type checker and bundlers do not need the optional package.
    const name = 'pkcs11js';
    try {
      const m = (await import(name)) as { default?: { PKCS11: new () => Pkcs11Api }; PKCS11?: unknown };
      return (m.default ?? m) as { PKCS11: new () => Pkcs11Api };
    } catch (cause) {
      binding = undefined;
      throw new IssuerError(
        'ERR_ISSUER_PKCS11_MODULE',
        'the pkcs11js binding is not installed (an optional dependency built with node-gyp: needs a C++ compiler and Node headers at npm install)',
        {},
        { cause },
      );
    }
  })();
  return binding;
}

const open = new Map<string, { module: Promise<Pkcs11Module>; refs: number }>();

export class Pkcs11Module {
  readonly path: string;
  readonly api: Pkcs11Api;
  /** Goes up with every re-initialisation: sessions of an older generation are dead. */
  generation = 0;
  #inFlight = new Set<Promise<unknown>>();
  #reinit: Promise<void> | undefined;

  private constructor(path: string, api: Pkcs11Api) {
    this.path = path;
    this.api = api;
  }

  /** The module at `path`, loaded and initialised once per process (shared; `release` when done). */
  static async open(path: string): Promise<Pkcs11Module> {
    const have = open.get(path);
    if (have !== undefined) {
      have.refs++;
      return have.module;
    }
    const module = (async () => {
      const { PKCS11 } = await loadBinding();
      const api = new PKCS11();
      try {
        api.load(path);
      } catch (cause) {
        throw new IssuerError(
          'ERR_ISSUER_PKCS11_MODULE',
          `cannot load the PKCS#11 module ${path}: ${why(cause)}`,
          {},
          { cause },
        );
      }
      try {
        api.C_Initialize({ flags: CK.CKF_OS_LOCKING_OK });
      } catch (cause) {
        if (ckr(cause) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
          api.close();
          throw new IssuerError(
            'ERR_ISSUER_PKCS11_MODULE',
            `the PKCS#11 module ${path} did not initialise: ${why(cause)}`,
            {},
            { cause },
          );
        }
      }
      return new Pkcs11Module(path, api);
    })();
    const entry = { module, refs: 1 };
    open.set(path, entry);
    module.catch(() => {
      if (open.get(path) === entry) open.delete(path);
    });
    return module;
  }

  /** Run an asynchronous Cryptoki call, counted so that a re-initialisation waits for it. */
  track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p);
    const done = () => this.#inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  /** A re-initialisation is under way: start no Cryptoki call (await `ready()`). */
  get busy(): boolean {
    return this.#reinit !== undefined;
  }

  /** Resolves once no re-initialisation is under way. */
  async ready(): Promise<void> {
    await this.#reinit;
  }

  /**
   * C_Finalize and C_Initialize again (after the calls in flight settle): the way back after a
   * token went away and came back. Every session of every key on the module is gone after it.
   */
  reinitialize(): Promise<void> {
    this.#reinit ??= (async () => {
      try {
        await Promise.allSettled([...this.#inFlight]);
        try {
          this.api.C_Finalize();
        } catch {
          // Not initialised any more (someone finalised it): initialise below.
        }
        this.api.C_Initialize({ flags: CK.CKF_OS_LOCKING_OK });
        this.generation++;
      } finally {
        this.#reinit = undefined;
      }
    })();
    return this.#reinit;
  }

  /** Drop one user; the last finalises the module and unloads it. */
  async release(): Promise<void> {
    const entry = open.get(this.path);
    if (entry === undefined || --entry.refs > 0) return;
    open.delete(this.path);
    await Promise.allSettled([...this.#inFlight]);
    try {
      this.api.C_Finalize();
    } catch {
      // Already finalised: nothing held.
    }
    this.api.close();
  }
}
