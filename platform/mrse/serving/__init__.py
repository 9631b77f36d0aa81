"""Online serving: request validation, the search engine, the gRPC server, metrics."""
