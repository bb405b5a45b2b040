# A SPIFFE Workload API client on the Python gRPC stack (Debian python3-grpcio), with stubs
# generated from runtime/workload/workload.proto by grpc_tools at test time (STUBS dir on argv).
# Prints one JSON line per streamed message, then {"error": CODE_NAME, "details": ...} or {"end": true}.
# usage: workload_client.py STUBS SOCKET x509|bundles|jwt [--no-metadata] [--max N]
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
            stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["a"]), metadata=md)
        out({"end": True})
    except grpc.RpcError as e:
        out({"error": e.code().name, "details": e.details()})
