"""Generated protobuf / gRPC code for the mrse.v1 API (`make proto`; do not edit)."""
