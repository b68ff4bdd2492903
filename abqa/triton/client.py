"""The one KServe v2 client of abqa, over tritonclient (HTTP or gRPC): health, metadata, statistics, inference.

Everything that talks to Triton goes through `TritonClient`: evaluate's served arms (and through them the router and
the app), the load test's Locust users and its statistics, `abqa serve`'s readiness probe, the benchmarks. Callers
see an `Endpoint`, `ModelInfo`, numpy arrays, JSON dicts and one exception, `InferFailed` (a request that failed,
after retries when the error was transient); tritonclient is imported only when a client is made, so that
`abqa --help` stays fast.

Transient errors (server busy or restarting, connection refused, timeouts) are retried with exponential backoff as
the client's `RetryPolicy` says; errors that will not go away by asking again (bad input, unknown model) fail at
once. The load test asks with `RetryPolicy(attempts=1)`: a failure is a failure there.

One `TritonClient` must be used from one thread: tritonclient's HTTP client runs on gevent, whose connections
belong to the thread that made them. Evaluate gives every arm its own client on its own worker thread; Locust
gives every user its own (greenlets of one user share it, up to `concurrency` requests at once over HTTP).
gRPC under gevent (the locustfile) needs `make_grpc_gevent_safe()` before the first channel is made.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from abqa.core.errors import AbqaError
from abqa.triton.endpoint import Endpoint

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
# Health checks answer at once or not at all.
HEALTH_TIMEOUT_S = 5.0

# KServe v2 datatypes the QA models use, and their numpy types.
_NUMPY_TYPES = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "FP16": np.float16, "FP64": np.float64}

# gRPC status codes and HTTP status codes that mean "try again later".
_TRANSIENT_GRPC = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED",
                   "StatusCode.ABORTED"}
_TRANSIENT_HTTP = {"429", "502", "503", "504"}
# Statistics fields that are strings in both protocols' JSON; gRPC's JSON spells every other number as a string.
_STRING_FIELDS = {"name", "version"}


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
    instance_kind: str = "KIND_CPU"   # the config's first instance group: KIND_CPU | KIND_GPU

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


def make_grpc_gevent_safe() -> None:
    """Make grpc cooperate with gevent (must run before the first gRPC channel is created)."""
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()


class TritonClient:
    """KServe v2 calls on one server; see the module note on threads.

    `concurrency` is the HTTP client's connection pool: how many requests one client may have in flight at once
    (the locustfile's parallel mode asks every arm at once from one user). gRPC multiplexes one channel.
    """

    def __init__(self, endpoint: Endpoint, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 retry: RetryPolicy | None = None, concurrency: int = 1):
        self.endpoint = endpoint
        self.protocol = endpoint.protocol
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        if self.protocol == "grpc":
            import tritonclient.grpc as module

            self._client = module.InferenceServerClient(endpoint.address, ssl=endpoint.ssl)
        else:
            import tritonclient.http as module

            self._client = module.InferenceServerClient(endpoint.address, ssl=endpoint.ssl,
                                                        concurrency=max(1, concurrency),
                                                        connection_timeout=min(timeout_s, 10.0),
                                                        network_timeout=timeout_s)
        self._module = module

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection is not an error worth reporting
            pass

    def __enter__(self) -> "TritonClient":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # -- health ----------------------------------------------------------------------------------------------------

    def _timeout_kwargs(self, seconds: float) -> dict:
        # The HTTP client's timeouts are its constructor's; gRPC takes one per call.
        return {"client_timeout": seconds} if self.protocol == "grpc" else {}

    def _answers(self, fn: Callable[..., Any], *args) -> bool:
        try:
            return bool(fn(*args, **self._timeout_kwargs(HEALTH_TIMEOUT_S)))
        except Exception:  # noqa: BLE001 - any failure means "no"
            return False

    def server_live(self) -> bool:
        """False when the server does not answer at all (dead, or not there yet)."""
        return self._answers(self._client.is_server_live)

    def server_ready(self) -> bool:
        return self._answers(self._client.is_server_ready)

    def model_ready(self, model: str) -> bool:
        return self._answers(self._client.is_model_ready, model)

    # -- metadata and statistics (JSON) ----------------------------------------------------------------------------

    def _json(self, fn: Callable[..., Any], *args, what: str) -> dict:
        kwargs = {"as_json": True} if self.protocol == "grpc" else {}
        try:
            return call_with_retries(lambda: fn(*args, **kwargs), self.retry, what=f"{self.endpoint.url} {what}")
        except InferFailed as exc:
            raise AbqaError(str(exc)) from None

    def server_metadata(self) -> dict:
        return self._json(self._client.get_server_metadata, what="server metadata")

    def model_metadata(self, model: str) -> dict:
        """KServe v2 model metadata (GET /v2/models/<model>) as JSON: name, versions, platform, inputs, outputs."""
        return self._json(self._client.get_model_metadata, model, what=f"model {model} metadata")

    def model_info(self, model: str) -> ModelInfo:
        """Inputs and outputs as the server declares them (KServe v2 model metadata), and max_batch_size."""
        if not self.model_ready(model):
            known = self.model_names()
            hint = f"; the server has: {', '.join(known)}" if known else ""
            raise AbqaError(f"arm {model!r}: model not ready on {self.endpoint.url}{hint}")
        config = self._json(self._client.get_model_config, model, what=f"model {model} config")
        return model_info_from_json(self.model_metadata(model), config)

    def model_names(self) -> list[str]:
        try:
            index = self._client.get_model_repository_index(**({"as_json": True} if self.protocol == "grpc" else {}))
        except Exception:  # noqa: BLE001 - only used for hints and lists
            return []
        entries = index.get("models", []) if isinstance(index, dict) else index
        return sorted(entry.get("name", "") for entry in entries if entry.get("name"))

    def statistics(self, model: str = "") -> dict:
        """Triton's inference statistics (request counts, queue and compute times, batch sizes) in the HTTP API's
        JSON, whichever the protocol (gRPC's JSON spells its 64-bit numbers as strings: made numbers here)."""
        stats = self._json(self._client.get_inference_statistics, model, what=f"statistics of {model or 'all models'}")
        return _numbers(stats) if self.protocol == "grpc" else stats

    # -- inference -------------------------------------------------------------------------------------------------

    def infer(self, model: ModelInfo, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request with a batch of inputs ([n, seq] each), cast to the declared datatypes; all outputs back.

        Retries transient errors; raises InferFailed.
        """
        missing = [name for name in model.input_names if name not in arrays]
        if missing:
            raise InferFailed(f"model {model.name}: input {missing[0]!r} was not prepared", transient=False, attempts=0)
        cast = {tensor.name: np.ascontiguousarray(arrays[tensor.name],
                                                  dtype=_NUMPY_TYPES.get(tensor.datatype, np.int64))
                for tensor in model.inputs}
        return self.request(model.name, cast, model.output_names)

    def request(self, model: str, arrays: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """One request with `arrays` as they are (their numpy types give the KServe datatypes); the named outputs
        back. Retries transient errors as the client's policy says; raises InferFailed, also when an output is
        missing from the answer."""
        from tritonclient.utils import np_to_triton_dtype

        tensors = []
        for name, array in arrays.items():
            tensor = self._module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        requested = [self._module.InferRequestedOutput(name) for name in outputs]
        kwargs = self._timeout_kwargs(self.timeout_s)

        def send() -> dict[str, np.ndarray]:
            result = self._client.infer(model, tensors, outputs=requested, **kwargs)
            answer = {name: result.as_numpy(name) for name in outputs}
            lacking = [name for name, array in answer.items() if array is None]
            if lacking:
                raise ValueError(f"the answer lacks output(s) {', '.join(lacking)}")
            return answer

        return call_with_retries(send, self.retry, what=f"model {model} on {self.endpoint.url}")


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
        instance_kind=next((group.get("kind") for group in config.get("instance_group") or () if group.get("kind")),
                           "KIND_CPU"),
    )


def _numbers(value: Any, key: str = "") -> Any:
    """gRPC's statistics JSON with its string-spelled integers as numbers (names and versions stay strings)."""
    if isinstance(value, dict):
        return {k: _numbers(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v, key) for v in value]
    if isinstance(value, str) and key not in _STRING_FIELDS and value.lstrip("-").isdigit():
        return int(value)
    return value
