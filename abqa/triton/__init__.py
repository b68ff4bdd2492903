"""The one Triton module: where a server is (`Endpoint`) and how abqa talks to it (`TritonClient`).

endpoint.py  Endpoint: --url/--protocol/--metrics-url parsed once; the wildcard -> loopback rule (pure)
client.py    TritonClient over tritonclient (HTTP or gRPC): health, metadata, statistics, inference with retries

Import the names from their modules; tritonclient itself is imported only when a client is made.
"""
