#!/usr/bin/env python3
"""A second EST client, Python's standard library only (urllib + ssl): bootstrap trust from
cacerts (the join token's root fingerprints), simpleenroll with HTTP Basic, then simplereenroll with
the certificate just issued. Usage: est_client.py HOST:PORT DEVICE_ID TOKEN DIR (DIR holds
key.pem + csr.der for the enrollment, key2.pem + csr2.der for the re-enrollment; writes ca.pem,
svid.pem, svid2.pem). The PKCS#7 is walked with a few lines of DER reading."""
import base64
import hashlib
import os
import ssl
import sys
import urllib.request


def tlv(b, i):
    """(tag, content start, end) of the DER element at i."""
    tag, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[i:i + k], "big")
        i += k
    return tag, i, i + n


def certs_only(der):
    """Certificates (DER, in order) of a certs-only PKCS#7 SignedData."""
    _, s, _ = tlv(der, 0)             # ContentInfo
    _, _, e = tlv(der, s)             # contentType OID
    _, s, _ = tlv(der, e)             # [0] content
    _, s, end = tlv(der, s)           # SignedData
    i = s
    for _ in range(3):                # version, digestAlgorithms, encapContentInfo
        _, _, i = tlv(der, i)
    tag, s, e = tlv(der, i)
    assert tag == 0xA0, "no certificates"
    out = []
    while s < e:
        _, _, ce = tlv(der, s)
        out.append(der[s:ce])
        s = ce
    return out


def pem(ders):
    return "".join(ssl.DER_cert_to_PEM_cert(d) for d in ders)


def b64(der):
    t = base64.b64encode(der).decode()
    return "".join(t[i:i + 64] + "\n" for i in range(0, len(t), 64)).encode()


def post(url, ctx, body, headers):
    req = urllib.request.Request(url, data=b64(body), method="POST", headers={"Content-Type": "application/pkcs10", **headers})
    with urllib.request.urlopen(req, context=ctx, timeout=15) as res:
        assert res.status == 200, res.status
        return certs_only(base64.b64decode(res.read()))


def main():
    gw, device, token, d = sys.argv[1:5]
    base = f"https://{gw}/.well-known/est"
    # 1. cacerts without verification, kept only if a root has one of the token's fingerprints
    #    (ewt1.<secret>.<fingerprint>[.<fingerprint>...])
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(base + "/cacerts", context=insecure, timeout=15) as res:
        roots = certs_only(base64.b64decode(res.read()))
    want = {base64.urlsafe_b64decode(f + "==") for f in token.split(".")[2:]}
    if not any(hashlib.sha256(r).digest() in want for r in roots):
        sys.exit("cacerts: not the gateway of this token")
    ca = os.path.join(d, "ca.pem")
    open(ca, "w").write(pem(roots))
    # 2. simpleenroll over a verified connection, the token as HTTP Basic
    ctx = ssl.create_default_context(cafile=ca)
    auth = base64.b64encode(f"{device}:{token}".encode()).decode()
    chain = post(base + "/simpleenroll", ctx, open(os.path.join(d, "csr.der"), "rb").read(), {"Authorization": "Basic " + auth})
    open(os.path.join(d, "svid.pem"), "w").write(pem(chain))
    print("enrolled", ssl._ssl._test_decode_cert(os.path.join(d, "svid.pem"))["subjectAltName"][0][1])
    # 3. simplereenroll with the certificate just issued
    ctx2 = ssl.create_default_context(cafile=ca)
    ctx2.load_cert_chain(os.path.join(d, "svid.pem"), os.path.join(d, "key.pem"))
    chain2 = post(base + "/simplereenroll", ctx2, open(os.path.join(d, "csr2.der"), "rb").read(), {})
    open(os.path.join(d, "svid2.pem"), "w").write(pem(chain2))
    print("reenrolled", ssl._ssl._test_decode_cert(os.path.join(d, "svid2.pem"))["subjectAltName"][0][1])


main()
