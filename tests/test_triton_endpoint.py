"""The one Triton module: `Endpoint` parsing (every accepted form, bad input named, the loopback rule) and
`TritonClient` on a real server over both protocols."""

from __future__ import annotations

import re

import numpy as np
import pytest

from abqa.core.config import DEFAULT_HOST, GRPC_PORT, HTTP_PORT, METRICS_PORT
from abqa.core.errors import AbqaError
from abqa.triton.endpoint import Endpoint, client_host, is_loopback

# --- what the user gives -> one Endpoint -----------------------------------------------------------------------------


@pytest.mark.parametrize("url, protocol, expected", [
    # (protocol, host, port, ssl)
    (None, "grpc", ("grpc", DEFAULT_HOST, GRPC_PORT, False)),
    (None, "http", ("http", DEFAULT_HOST, HTTP_PORT, False)),
    (None, None, ("grpc", DEFAULT_HOST, GRPC_PORT, False)),                 # gRPC is abqa's default
    ("triton", "grpc", ("grpc", "triton", GRPC_PORT, False)),               # host: the protocol's port
    ("triton", "http", ("http", "triton", HTTP_PORT, False)),
    ("triton:9001", "grpc", ("grpc", "triton", 9001, False)),               # host:port
    ("Triton.Example:9001", "grpc", ("grpc", "triton.example", 9001, False)),
    ("http://127.0.0.1:9000/", "http", ("http", "127.0.0.1", 9000, False)),
    ("http://localhost", None, ("http", "localhost", HTTP_PORT, False)),    # the scheme says HTTP
    ("https://triton.example", "http", ("http", "triton.example", 443, True)),   # TLS and no port: 443
    ("https://triton.example:8443", None, ("http", "triton.example", 8443, True)),
    ("grpc://localhost", None, ("grpc", "localhost", GRPC_PORT, False)),
    ("grpcs://triton.example", "grpc", ("grpc", "triton.example", 443, True)),
    ("GRPC://triton:7001", "grpc", ("grpc", "triton", 7001, False)),
    ("http://triton", "grpc", ("grpc", "triton", GRPC_PORT, False)),        # http:// for gRPC: no TLS, gRPC's port
    ("[::1]", "http", ("http", "::1", HTTP_PORT, False)),                   # IPv6 in brackets
    ("[::1]:9001", "grpc", ("grpc", "::1", 9001, False)),
    ("http://[fe80::1%eth0]:8000", "http", ("http", "fe80::1%eth0", 8000, False)),
    ("  127.0.0.1:8001 ", "grpc", ("grpc", "127.0.0.1", 8001, False)),
])
def test_every_accepted_form(url, protocol, expected):
    endpoint = Endpoint.parse(url, protocol)
    assert (endpoint.protocol, endpoint.host, endpoint.port, endpoint.ssl) == expected


def test_the_forms_callers_need():
    grpc = Endpoint.parse("10.0.0.5:9001", "grpc")
    assert grpc.address == "10.0.0.5:9001"                        # tritonclient
    assert grpc.url == "grpc://10.0.0.5:9001" == str(grpc)        # messages, and parsed back to the same endpoint
    assert Endpoint.parse(grpc.url) == grpc
    http = Endpoint.parse("https://[::1]:8443", "http")
    assert http.address == "[::1]:8443" and http.url == "https://[::1]:8443"   # Locust's --host, urllib
    assert Endpoint.parse(http.url, "http") == http
    assert Endpoint.parse("grpcs://triton.example", "grpc").url == "grpcs://triton.example:443"


def test_the_metrics_url():
    assert Endpoint.parse("http://10.1.2.3:18000", "http").metrics_url == f"http://10.1.2.3:{METRICS_PORT}/metrics"
    assert Endpoint.parse("10.0.0.5:8001", "grpc").metrics_url == "http://10.0.0.5:8002/metrics"
    assert Endpoint.parse("[::1]:8001", "grpc").metrics_url == "http://[::1]:8002/metrics"
    assert Endpoint.parse("https://triton.example", "http").metrics_url == "https://triton.example:8002/metrics"
    given = {  # --metrics-url as written -> as read
        "none": None, "NONE": None,
        "http://prom:9090/metrics": "http://prom:9090/metrics",
        "http://prom:9090": "http://prom:9090/metrics",            # no path: Triton's
        "http://prom:9090/": "http://prom:9090/metrics",
        "https://prom/triton/metrics/": "https://prom/triton/metrics",
        "10.0.0.9": "http://10.0.0.9:8002/metrics",                # like --url: host[:port], Triton's port
        "10.0.0.9:9100": "http://10.0.0.9:9100/metrics",
    }
    for text, expected in given.items():
        assert Endpoint.parse("triton:8000", "http", text).metrics_url == expected, text


@pytest.mark.parametrize("url, protocol, message", [
    ("", "grpc", "--url '': no host"),
    ("http://", "http", "--url 'http://': no host"),
    (":8001", "grpc", "--url ':8001': no host"),
    ("tcp://triton:8001", "grpc", "--url 'tcp://triton:8001': unknown scheme 'tcp'"),
    ("triton:http", "http", "--url 'triton:http': port 'http' is not a number"),
    ("triton:0", "grpc", "port '0' is not a number from 1 to 65535"),
    ("triton:65536", "grpc", "port '65536' is not a number from 1 to 65535"),
    ("::1", "grpc", "--url '::1': an IPv6 address goes in brackets"),
    ("[::1", "grpc", "not an IPv6 address in brackets"),
    ("[::1]8001", "grpc", "unexpected '8001' after the address"),
    ("[not-v6]:8001", "grpc", "not an IPv6 address in brackets"),
    ("http://triton:8000/v2", "http", "--url 'http://triton:8000/v2': a Triton address has no path (/v2)"),
    ("tri ton", "grpc", "'tri ton' is not a host name or an IP address"),
    ("user@triton:8001", "grpc", "'user@triton' is not a host name"),
    ("grpc://triton:8001", "http", "is a gRPC address but --protocol is http"),
    ("triton", "tcp", "--protocol 'tcp': use one of grpc, http"),
])
def test_bad_input_names_the_flag_and_value(url, protocol, message):
    with pytest.raises(AbqaError, match=re.escape(message)):
        Endpoint.parse(url, protocol)


def test_errors_name_the_flag_the_caller_has():
    with pytest.raises(AbqaError, match=r"^--triton-url 'triton:x'"):
        Endpoint.parse("triton:x", None, flag="--triton-url")
    with pytest.raises(AbqaError, match=r"^--metrics-url 'ftp://prom': Triton's metrics are served over http"):
        Endpoint.parse("triton", "http", "ftp://prom")
    with pytest.raises(AbqaError, match=r"^--metrics-url 'prom:port': port 'port'"):
        Endpoint.parse("triton", "http", "prom:port")


# --- the loopback rule -----------------------------------------------------------------------------------------------


def test_a_wildcard_bind_is_reached_on_loopback():
    assert client_host("0.0.0.0") == client_host("") == DEFAULT_HOST
    assert client_host("::") == "::1"
    assert client_host("10.0.0.5") == "10.0.0.5" and client_host("localhost") == "localhost"
    ports = {"http_port": 9000, "grpc_port": 9001, "metrics_port": 9002}
    served = Endpoint.local("grpc", "0.0.0.0", **ports)
    assert served.address == f"{DEFAULT_HOST}:9001" and served.metrics_url == f"http://{DEFAULT_HOST}:9002/metrics"
    assert Endpoint.local("http", "::", **ports).url == "http://[::1]:9000"
    assert Endpoint.local("http", "10.0.0.5", **ports).url == "http://10.0.0.5:9000"


def test_what_is_on_this_machine():
    assert is_loopback("127.0.0.2") and is_loopback("LOCALHOST") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")
    for url in ("127.0.0.1:8001", "localhost", "[::1]", "0.0.0.0:8001"):
        assert Endpoint.parse(url, "grpc").is_local, url
    assert not Endpoint.parse("192.0.2.7:8001", "grpc").is_local   # TEST-NET-1: never this machine


# --- the one client on a real server -------------------------------------------------------------------------------


@pytest.mark.integration
def test_both_protocols_give_the_same_answers(triton_server):
    from abqa.triton.client import InferFailed, RetryPolicy, TritonClient

    seen = {}
    for endpoint in (triton_server.http, triton_server.grpc):
        with TritonClient(endpoint, retry=RetryPolicy(attempts=1)) as client:
            assert client.server_live() and client.server_ready() and client.model_ready("bert")
            assert not client.model_ready("nope")
            info = client.model_info("bert")
            assert info.input_names == ["input_ids", "attention_mask", "token_type_ids"]
            assert info.output_names == ["start_logits", "end_logits"] and info.max_batch_size == 8
            ids = np.ones((2, 16), dtype=np.int32)        # cast to the declared INT64 by infer()
            answer = client.infer(info, {"input_ids": ids, "attention_mask": ids, "token_type_ids": ids * 0})
            assert answer["start_logits"].shape == (2, 16)
            stats = client.statistics("bert")["model_stats"][0]
            seen[endpoint.protocol] = (answer, stats)
            with pytest.raises(InferFailed, match=f"model nope on {endpoint.url}") as failed:
                client.request("nope", {"input_ids": ids.astype(np.int64)}, ["start_logits"])
            assert not failed.value.transient
            with pytest.raises(AbqaError, match=f"arm 'nope': model not ready on {endpoint.url}"):
                client.model_info("nope")
    np.testing.assert_array_equal(seen["http"][0]["start_logits"], seen["grpc"][0]["start_logits"])
    # Statistics in the HTTP API's JSON whichever the protocol: numbers as numbers, names and versions as strings.
    http_stats, grpc_stats = seen["http"][1], seen["grpc"][1]
    assert isinstance(grpc_stats["inference_count"], int) and isinstance(grpc_stats["version"], str)
    assert grpc_stats["inference_count"] >= http_stats["inference_count"] >= 2
    assert all(isinstance(entry["batch_size"], int) for entry in grpc_stats["batch_stats"])


def test_a_server_that_is_not_there_is_transient():
    from abqa.serve.process import free_ports
    from abqa.triton.client import InferFailed, RetryPolicy, TritonClient

    (port,) = free_ports(1)
    for protocol in ("http", "grpc"):
        endpoint = Endpoint.parse(f"127.0.0.1:{port}", protocol)
        with TritonClient(endpoint, timeout_s=5, retry=RetryPolicy(attempts=2, initial_delay_s=0.01)) as client:
            assert not client.server_live()
            with pytest.raises(InferFailed, match=r"\(after 2 tries\)") as failed:
                client.request("bert", {"input_ids": np.ones((1, 4), np.int64)}, ["start_logits"])
            assert failed.value.transient and failed.value.attempts == 2
            with pytest.raises(AbqaError, match=f"{endpoint.url} statistics of bert"):
                client.statistics("bert")
