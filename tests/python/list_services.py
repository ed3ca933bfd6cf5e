"""Lists a gRPC server's services with the stock Python reflection client (grpcio-reflection).

Used by tests/tests/cli.rs to show that clients speaking reflection v1alpha, not only v1, can
discover the API. Prints one service name per line; exits non-zero if the server refuses.
Usage: python3 list_services.py HOST:PORT [CA_CERT]   (TLS when a CA certificate is given)
"""
import sys

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    if len(sys.argv) > 2:
        with open(sys.argv[2], "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        # The service's certificate names "localhost" (and 127.0.0.1).
        options = [("grpc.ssl_target_name_override", "localhost")]
        channel = grpc.secure_channel(sys.argv[1], creds, options=options)
    else:
        channel = grpc.insecure_channel(sys.argv[1])
    with channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        for name in db.get_services():
            print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
