# A SPIFFE Workload API client on the Python gRPC stack (Debian python3-grpcio), with stubs
# generated from runtime/workload/workload.proto by grpc_tools at test time (STUBS dir on argv).
# Prints one JSON line per streamed message, then {"error": CODE_NAME, "details": ...} or {"end": true}.
# usage: workload_client.py STUBS SOCKET x509|bundles|jwt|jwtbundles|validate [--no-metadata] [--max N]
#        [--aud A]... [--spiffe-id ID] [--token T]
import base64
import hashlib
import json
import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import workload_pb2  # noqa: E402
import workload_pb2_grpc  # noqa: E402

sock, method = sys.argv[2], sys.argv[3]
md = [] if "--no-metadata" in sys.argv else [("workload.spiffe.io", "true")]
limit = int(sys.argv[sys.argv.index("--max") + 1]) if "--max" in sys.argv else -1
auds = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--aud"]


def opt(name):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else ""


def out(obj):
    print(json.dumps(obj), flush=True)


with grpc.insecure_channel("unix:" + sock) as ch:
    stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(ch)
    try:
        if method == "x509":
            n = 0
            for r in stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=md):
                out({"svids": [{"id": s.spiffe_id, "sha": hashlib.sha256(s.x509_svid).hexdigest(),
                                "keyLen": len(s.x509_svid_key), "bundleLen": len(s.bundle), "hint": s.hint,
                                **({"chain": base64.b64encode(s.x509_svid).decode(),
                                    "key": base64.b64encode(s.x509_svid_key).decode(),
                                    "bundle": base64.b64encode(s.bundle).decode()}
                                   if "--der" in sys.argv else {})}
                               for s in r.svids]})
                n += 1
                if n == limit:
                    break
        elif method == "bundles":
            for r in stub.FetchX509Bundles(workload_pb2.X509BundlesRequest(), metadata=md):
                out({"bundles": {k: len(v) for k, v in r.bundles.items()}})
                break
        elif method == "jwt":
            r = stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=auds, spiffe_id=opt("--spiffe-id")),
                                  metadata=md)
            out({"jwt": [{"id": s.spiffe_id, "token": s.svid, "hint": s.hint} for s in r.svids]})
        elif method == "jwtbundles":
            n = 0
            for r in stub.FetchJWTBundles(workload_pb2.JWTBundlesRequest(), metadata=md):
                out({"jwks": {k: json.loads(v) for k, v in r.bundles.items()}})
                n += 1
                if n == limit:
                    break
        elif method == "validate":
            r = stub.ValidateJWTSVID(workload_pb2.ValidateJWTSVIDRequest(audience=opt("--aud"), svid=opt("--token")),
                                     metadata=md)
            from google.protobuf.json_format import MessageToDict
            out({"validated": {"id": r.spiffe_id, "claims": MessageToDict(r.claims)}})
        out({"end": True})
    except grpc.RpcError as e:
        out({"error": e.code().name, "details": e.details()})
