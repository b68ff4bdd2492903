"""A thin KServe v2 client boundary over tritonclient (HTTP or gRPC): metadata, readiness, inference, statistics.

The rest of the client never imports tritonclient: it sees `ModelInfo`, numpy arrays and two exceptions,
`InferFailed` (a request that failed, after retries when the error was transient) and nothing else.
Transient errors (server busy or restarting, connection refused, timeouts) are retried with exponential backoff;
errors that will not go away by asking again (bad input, unknown model) fail at once.

One `TritonClient` must be used from one thread: tritonclient's HTTP client runs on gevent, whose connections
belong to the thread that made them. The runner gives every arm its own client on its own worker thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from abqa.core.config import GRPC_PORT, HTTP_PORT
from abqa.core.errors import AbqaError

log = logging.getLogger(__name__)

PROTOCOLS = ("grpc", "http")

# KServe v2 datatypes the QA models use, and their numpy types.
_NUMPY_TYPES = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "FP16": np.float16, "FP64": np.float64}

# gRPC status codes and HTTP status codes that mean "try again later".
_TRANSIENT_GRPC = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED",
                   "StatusCode.ABORTED"}
_TRANSIENT_HTTP = {"429", "502", "503", "504"}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4            # tries in all, the first included
    initial_delay_s: float = 0.25
    multiplier: float = 2.0
    max_delay_s: float = 4.0

    def delays(self) -> list[float]:
        """The waits between consecutive tries."""
        return [min(self.initial_delay_s * self.multiplier ** i, self.max_delay_s) for i in range(self.attempts - 1)]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str               # KServe v2: "INT64", "FP32", ...
    shape: tuple[int, ...]      # with the batch dimension when the model batches (-1 = any)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    max_batch_size: int = 0     # from the model config; 0 = the model does not batch

    @property
    def input_names(self) -> list[str]:
        return [tensor.name for tensor in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [tensor.name for tensor in self.outputs]


class InferFailed(Exception):
    """A request that failed for good: `transient` says whether it was still a retryable error at the end."""

    def __init__(self, message: str, *, transient: bool, attempts: int):
        super().__init__(message)
        self.transient = transient
        self.attempts = attempts


def normalize_url(url: str, protocol: str) -> str:
    """tritonclient wants "host:port" (no scheme); a missing port takes the protocol's default."""
    if protocol not in PROTOCOLS:
        raise AbqaError(f"--protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    address = url.split("://", 1)[-1].rstrip("/")
    if not address:
        raise AbqaError(f"--url {url!r}: no host")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or address.endswith("]"):
        address = f"{address}:{GRPC_PORT if protocol == 'grpc' else HTTP_PORT}"
    return address


def is_transient(exc: BaseException) -> bool:
    """Whether asking again later may succeed."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        return status in _TRANSIENT_GRPC or status in _TRANSIENT_HTTP
    # The HTTP client raises the socket's own errors (refused, reset, timed out); gevent's Timeout is not an OSError.
    return isinstance(exc, (OSError, TimeoutError)) or type(exc).__name__ in ("Timeout", "ConnectionError")


def describe(exc: BaseException) -> str:
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status = exc.status() or ""
        return f"{status}: {exc.message()}" if status else str(exc.message())
    return f"{type(exc).__name__}: {exc}"


def call_with_retries(fn: Callable[[], Any], policy: RetryPolicy, *, what: str,
                      sleep: Callable[[float], None] = time.sleep) -> Any:
    """Call `fn`, retrying transient errors with backoff; raise InferFailed when it fails for good."""
    delays = policy.delays()
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - every failure is classified and reported
            transient = is_transient(exc)
            if not transient or attempt == policy.attempts:
                raise InferFailed(f"{what}: {describe(exc)}" + (f" (after {attempt} tries)" if attempt > 1 else ""),
                                  transient=transient, attempts=attempt) from exc
            log.debug("%s: %s; retrying in %.2f s", what, describe(exc), delays[attempt - 1])
            sleep(delays[attempt - 1])
    raise AssertionError("unreachable")


@dataclass
class TritonClient:
    """KServe v2 calls on one server; see the module note on threads."""

    url: str
    protocol: str = "grpc"
    timeout_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        self.url = normalize_url(self.url, self.protocol)
        if self.protocol == "grpc":
            import tritonclient.grpc as module
            self._client = module.InferenceServerClient(self.url)
        else:
            import tritonclient.http as module
            self._client = module.InferenceServerClient(self.url, connection_timeout=min(self.timeout_s, 10.0),
                                                        network_timeout=self.timeout_s)
        self._module = module

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection is not an error worth reporting
            pass

    # -- health ----------------------------------------------------------------------------------------------------

    def _timeout_kwargs(self, seconds: float) -> dict:
        return {"client_timeout": seconds} if self.protocol == "grpc" else {}

    def server_live(self) -> bool:
        """False when the server does not answer at all (dead, or not there yet)."""
        try:
            return bool(self._client.is_server_live(**self._timeout_kwargs(5.0)))
        except Exception:  # noqa: BLE001 - any failure means "not live"
            return False

    def server_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready(**self._timeout_kwargs(5.0)))
        except Exception:  # noqa: BLE001
            return False

    def model_ready(self, model: str) -> bool:
        try:
            return bool(self._client.is_model_ready(model, **self._timeout_kwargs(5.0)))
        except Exception:  # noqa: BLE001
            return False

    def server_metadata(self) -> dict:
        return self._json(lambda: self._client.get_server_metadata(**self._json_kwargs()), "server metadata")

    # -- models ----------------------------------------------------------------------------------------------------

    def _json_kwargs(self) -> dict:
        return {"as_json": True} if self.protocol == "grpc" else {}

    def _json(self, fn: Callable[[], Any], what: str) -> dict:
        try:
            return call_with_retries(fn, self.retry, what=f"{self.protocol}://{self.url} {what}")
        except InferFailed as exc:
            raise AbqaError(str(exc)) from None

    def model_info(self, model: str) -> ModelInfo:
        """Inputs and outputs as the server declares them (KServe v2 model metadata), and max_batch_size."""
        if not self.model_ready(model):
            known = self.model_names()
            hint = f"; the server has: {', '.join(known)}" if known else ""
            raise AbqaError(f"arm {model!r}: model not ready on {self.protocol}://{self.url}{hint}")
        metadata = self._json(lambda: self._client.get_model_metadata(model, **self._json_kwargs()),
                              f"model {model} metadata")
        config = self._json(lambda: self._client.get_model_config(model, **self._json_kwargs()), f"model {model} config")
        return model_info_from_json(metadata, config)

    def model_names(self) -> list[str]:
        try:
            index = self._client.get_model_repository_index(**self._json_kwargs())
        except Exception:  # noqa: BLE001 - only used for a hint in an error message
            return []
        entries = index.get("models", []) if isinstance(index, dict) else index
        return sorted(entry.get("name", "") for entry in entries if entry.get("name"))

    def statistics(self, model: str = "") -> dict:
        """Triton's inference statistics (request counts, queue and compute times) as JSON."""
        return self._json(lambda: self._client.get_inference_statistics(model, **self._json_kwargs()),
                          f"statistics of {model or 'all models'}")

    # -- inference -------------------------------------------------------------------------------------------------

    def infer(self, model: ModelInfo, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request with a batch of inputs ([n, seq] each), cast to the declared datatypes; all outputs back.

        Retries transient errors; raises InferFailed.
        """
        inputs = []
        for tensor in model.inputs:
            if tensor.name not in arrays:
                raise InferFailed(f"model {model.name}: input {tensor.name!r} was not prepared", transient=False, attempts=0)
            data = np.ascontiguousarray(arrays[tensor.name], dtype=_NUMPY_TYPES.get(tensor.datatype, np.int64))
            infer_input = self._module.InferInput(tensor.name, list(data.shape), tensor.datatype)
            infer_input.set_data_from_numpy(data)
            inputs.append(infer_input)
        outputs = [self._module.InferRequestedOutput(name) for name in model.output_names]
        kwargs = self._timeout_kwargs(self.timeout_s)

        def request():
            result = self._client.infer(model.name, inputs, outputs=outputs, **kwargs)
            return {name: result.as_numpy(name) for name in model.output_names}

        return call_with_retries(request, self.retry, what=f"model {model.name} on {self.protocol}://{self.url}")


def model_info_from_json(metadata: dict, config: dict) -> ModelInfo:
    """ModelInfo from the KServe v2 metadata and Triton's model config, as either protocol returns them as JSON.

    gRPC's JSON nests the config under "config" and spells numbers as strings; HTTP's does neither.
    """
    config = config.get("config", config)

    def tensors(entries) -> tuple[TensorInfo, ...]:
        return tuple(TensorInfo(entry["name"], entry["datatype"], tuple(int(d) for d in entry.get("shape", ())))
                     for entry in entries or ())

    return ModelInfo(
        name=metadata["name"],
        versions=tuple(str(v) for v in metadata.get("versions", ())),
        platform=metadata.get("platform", ""),
        inputs=tensors(metadata.get("inputs")),
        outputs=tensors(metadata.get("outputs")),
        max_batch_size=int(config.get("max_batch_size", 0) or 0),
    )
