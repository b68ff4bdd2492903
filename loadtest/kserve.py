"""A small KServe v2 client over tritonclient for the load test: infer, model metadata, statistics.

The HTTP client (tritonclient.http, built on geventhttpclient) is gevent-friendly, so it is what Locust users
speak by default. tritonclient.grpc is gevent-safe only after `grpc.experimental.gevent.init_gevent()`, which
`make_grpc_gevent_safe()` calls; the locustfile calls it before any gRPC client exists.

The same class serves `abqa loadtest` itself (not gevent-patched) for the statistics API and metadata.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np

from abqa.core.errors import AbqaError

DEFAULT_TIMEOUT_S = 60.0


def split_url(url: str, protocol: str) -> tuple[str, bool]:
    """`http://127.0.0.1:8000` -> ("127.0.0.1:8000", ssl False): the address form tritonclient takes."""
    text = url.strip()
    if "://" not in text:
        text = f"{'https' if protocol == 'https' else 'http'}://{text}"
    parts = urlsplit(text)
    if not parts.hostname:
        raise AbqaError(f"--url {url!r}: no host in it; use e.g. http://127.0.0.1:8000")
    if parts.scheme not in ("http", "https", "grpc", "grpcs"):
        raise AbqaError(f"--url {url!r}: unknown scheme {parts.scheme!r}; use http://HOST:PORT (or HOST:PORT for gRPC)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = {"http": 8000, "https": 443, "grpc": 8001, "grpcs": 443}[parts.scheme]
    if protocol == "grpc" and parts.scheme in ("http", "https") and parts.port is None:
        default_port = 8001
    return f"{host}:{parts.port or default_port}", parts.scheme in ("https", "grpcs")


def make_grpc_gevent_safe() -> None:
    """Make grpc cooperate with gevent (must run before the first gRPC channel is created)."""
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()


class KServeClient:
    """One Triton endpoint, over HTTP or gRPC, through tritonclient."""

    def __init__(self, url: str, protocol: str = "http", *, concurrency: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.protocol = protocol
        self.timeout_s = timeout_s
        address, ssl = split_url(url, protocol)
        self.address = address
        if protocol == "http":
            import tritonclient.http as module

            # concurrency = connections in the pool: parallel mode asks every arm at once from one user.
            self._client = module.InferenceServerClient(address, ssl=ssl, concurrency=max(1, concurrency),
                                                        connection_timeout=timeout_s, network_timeout=timeout_s)
        elif protocol == "grpc":
            import tritonclient.grpc as module

            self._client = module.InferenceServerClient(address, ssl=ssl)
        else:
            raise AbqaError(f"--protocol {protocol!r}: use http or grpc")
        self._module = module

    def infer(self, arm: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> int:
        """Send one request; return the bytes of the outputs received. Raises on any failure."""
        from tritonclient.utils import np_to_triton_dtype

        tensors = []
        for name, array in inputs.items():
            tensor = self._module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        if self.protocol == "http":
            requested = [self._module.InferRequestedOutput(name, binary_data=True) for name in outputs]
            result = self._client.infer(arm, tensors, outputs=requested)
        else:
            requested = [self._module.InferRequestedOutput(name) for name in outputs]
            result = self._client.infer(arm, tensors, outputs=requested, client_timeout=self.timeout_s)
        received = 0
        for name in outputs:
            array = result.as_numpy(name)
            if array is None:
                raise ValueError(f"the answer of {arm} lacks output {name!r}")
            received += array.nbytes
        return received

    def model_metadata(self, arm: str) -> dict[str, Any]:
        if self.protocol == "http":
            return self._client.get_model_metadata(arm)
        return self._client.get_model_metadata(arm, as_json=True)

    def statistics(self, arm: str) -> dict[str, Any]:
        """Triton's statistics for one model, as the HTTP API's JSON (gRPC's int64 fields come as strings)."""
        if self.protocol == "http":
            return self._client.get_inference_statistics(arm)
        return self._client.get_inference_statistics(arm, as_json=True)

    def is_live(self) -> bool:
        return bool(self._client.is_server_live())

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "KServeClient":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
