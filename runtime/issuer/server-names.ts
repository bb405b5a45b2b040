/**
 * Which broker host names a gateway may have on its SVID. A gateway asks for the DNS names and
 * IP addresses its local broker listens under; they become DNS/IP SANs so that plain TLS clients
 * (mosquitto_pub, the device's own stack) can check the broker's host name. Names outside the
 * policy are refused, never silently dropped, so a misconfiguration is seen at once.
 *
 * The default admits only names that mean something on the gateway's own network and nowhere
 * else: `localhost`, names under `.local` (mDNS) and `.home.arpa` (RFC 8375), and loopback,
 * private (RFC 1918, RFC 4193) and link-local addresses. A fleet with its own LAN naming adds
 * suffixes; public names are never admitted by default, so a gateway cannot obtain a certificate
 * for a host it does not own.
 *
 * @example
 * ```ts
 * checkServerNames(['localhost', '192.168.1.10'], DEFAULT_SERVER_NAME_POLICY); // ok
 * checkServerNames(['issuer.example.com'], DEFAULT_SERVER_NAME_POLICY);        // ERR_ISSUER_SERVER_NAME
 * ```
 */
import { BlockList, isIP } from 'node:net';
import { IssuerError } from '../errors.ts';
import { serverGeneralName } from '../svid/signer.ts';

export interface ServerNamePolicy {
  /** DNS suffixes admitted (a suffix `.lan` admits `gw1.lan`); `localhost` is always admitted. */
  readonly dnsSuffixes: readonly string[];
  /** Admit loopback, private and link-local IP addresses. */
  readonly privateAddresses: boolean;
}

export const DEFAULT_SERVER_NAME_POLICY: ServerNamePolicy = {
  dnsSuffixes: ['.local', '.home.arpa'],
  privateAddresses: true,
};

const PRIVATE = new BlockList();
PRIVATE.addSubnet('127.0.0.0', 8, 'ipv4');
PRIVATE.addSubnet('10.0.0.0', 8, 'ipv4');
PRIVATE.addSubnet('172.16.0.0', 12, 'ipv4');
PRIVATE.addSubnet('192.168.0.0', 16, 'ipv4');
PRIVATE.addSubnet('169.254.0.0', 16, 'ipv4');
PRIVATE.addAddress('::1', 'ipv6');
PRIVATE.addSubnet('fc00::', 7, 'ipv6');
PRIVATE.addSubnet('fe80::', 10, 'ipv6');

/** Returns the names, normalised, or throws ERR_ISSUER_SERVER_NAME naming the first refused one. */
export function checkServerNames(names: readonly string[] | undefined, policy: ServerNamePolicy): string[] {
  if (names === undefined) return [];
  const out: string[] = [];
  for (const raw of names) {
    const refuse = (why: string): never => {
      throw new IssuerError(
        'ERR_ISSUER_SERVER_NAME',
        `server name ${JSON.stringify(raw.slice(0, 80))}: ${why}`,
      );
    };
    try {
      serverGeneralName(raw);
    } catch {
      refuse('not a DNS name or IP address');
    }
    const family = isIP(raw);
    if (family !== 0) {
      if (!policy.privateAddresses || !PRIVATE.check(raw, family === 4 ? 'ipv4' : 'ipv6'))
        refuse('not a loopback, private or link-local address');
      out.push(raw);
      continue;
    }
    const dns = raw.toLowerCase();
    if (
      dns !== 'localhost' &&
      !policy.dnsSuffixes.some((sfx) => dns.endsWith(sfx.toLowerCase()) && dns.length > sfx.length)
    ) {
      refuse(`not localhost and not under ${policy.dnsSuffixes.join(', ')}`);
    }
    out.push(dns);
  }
  return [...new Set(out)];
}
