"""Lists a gRPC server's services with the stock Python reflection client (grpcio-reflection).

Used by tests/tests/cli.rs to show that clients speaking reflection v1alpha, not only v1, can
discover the API. Prints one service name per line; exits non-zero if the server refuses.
Usage: python3 list_services.py HOST:PORT
"""
import sys

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    with grpc.insecure_channel(sys.argv[1]) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        for name in db.get_services():
            print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
