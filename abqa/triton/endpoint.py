"""Where a Triton server is: one `Endpoint`, parsed once from what the user gives (`--url`, `--protocol`,
`--metrics-url`), in every form the callers need.

Accepted addresses: `host`, `host:port`, `[v6]:port`, and the same after `http://`, `https://`, `grpc://` or
`grpcs://`. The rules, in one place:

- protocol: `--protocol` when given; otherwise the scheme's (http/https -> HTTP, grpc/grpcs -> gRPC); otherwise
  gRPC, abqa's default. `grpc://` with `--protocol http` is a contradiction and an error; `http://` is accepted for
  gRPC too (Locust and browsers write every host that way) and then only says "no TLS".
- TLS: on when the scheme says so (`https://`, `grpcs://`).
- port: the one given; without one, 443 when the scheme says TLS, else Triton's default for the protocol
  (HTTP 8000, gRPC 8001).
- metrics: `--metrics-url` when given (`none` disables it; a URL without a path gets `/metrics`); otherwise the same
  host, port 8002, `/metrics`, over https when the endpoint uses TLS.

A server bound to a wildcard address (0.0.0.0, ::, "") is reached on loopback: `client_host` is that rule, used by
`abqa serve` when it says where it listens and by everything that starts one.
"""

from __future__ import annotations

import contextlib
import re
import socket
from dataclasses import dataclass

from abqa.core.config import DEFAULT_HOST, GRPC_PORT, HTTP_PORT, METRICS_PORT
from abqa.core.errors import AbqaError

PROTOCOLS = ("grpc", "http")
DEFAULT_PORTS = {"http": HTTP_PORT, "grpc": GRPC_PORT}
TLS_PORT = 443
# scheme -> (protocol it implies, TLS)
SCHEMES = {"http": ("http", False), "https": ("http", True), "grpc": ("grpc", False), "grpcs": ("grpc", True)}
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
METRICS_PATH = "/metrics"

_HOST_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$")


def client_host(host: str) -> str:
    """The host a client on this machine dials for a server bound to `host`: a wildcard bind means loopback."""
    if host in WILDCARD_HOSTS:
        return "::1" if host == "::" else DEFAULT_HOST
    return host


def is_loopback(host: str) -> bool:
    return host.lower() in ("localhost", "::1") or host.startswith("127.")


def bracketed(host: str) -> str:
    """An IPv6 address in brackets, as URLs and "host:port" need it."""
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class Endpoint:
    protocol: str                       # "grpc" | "http"
    host: str                           # a name or an IP address (IPv6 without brackets)
    port: int
    ssl: bool = False
    metrics_url: str | None = None      # Triton's Prometheus text; None: not read

    @classmethod
    def parse(cls, url: str | None, protocol: str | None = None, metrics_url: str | None = None, *,
              flag: str = "--url") -> "Endpoint":
        """The endpoint a user means; None for `url` is the default server on 127.0.0.1. See the module rules."""
        if protocol is not None and protocol not in PROTOCOLS:
            raise AbqaError(f"--protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
        scheme, host, port = _split(url, flag) if url is not None else ("", DEFAULT_HOST, None)
        implied, ssl = SCHEMES.get(scheme, (None, False))
        if protocol is None:
            protocol = implied or "grpc"
        elif implied == "grpc" and protocol != "grpc":
            raise AbqaError(f"{flag} {url!r} is a gRPC address but --protocol is {protocol}: "
                            "drop the grpc:// or pass --protocol grpc")
        if port is None:
            port = TLS_PORT if ssl else DEFAULT_PORTS[protocol]
        return cls(protocol, host, port, ssl, _metrics_url(metrics_url, host, ssl))

    @classmethod
    def local(cls, protocol: str, bind_host: str, *, http_port: int, grpc_port: int, metrics_port: int) -> "Endpoint":
        """How a client on this machine reaches, over `protocol`, a server bound to `bind_host` and these ports
        (as `abqa serve --host --http-port --grpc-port --metrics-port`)."""
        host = client_host(bind_host)
        port = grpc_port if protocol == "grpc" else http_port
        return cls(protocol, host, port, False, _web_url(host, metrics_port, METRICS_PATH))

    @property
    def address(self) -> str:
        """"host:port", as tritonclient takes it."""
        return f"{bracketed(self.host)}:{self.port}"

    @property
    def scheme(self) -> str:
        return self.protocol + ("s" if self.ssl else "")

    @property
    def url(self) -> str:
        """With its scheme: Locust's --host, urllib, messages (`grpc://127.0.0.1:8001`)."""
        return f"{self.scheme}://{self.address}"

    @property
    def is_local(self) -> bool:
        """Whether the server is on this machine (loopback, a wildcard, or this machine's own name)."""
        if is_loopback(client_host(self.host)):
            return True
        with contextlib.suppress(OSError):
            return self.host in (socket.gethostname().lower(), socket.getfqdn().lower())
        return False

    def __str__(self) -> str:
        return self.url


def _split(url: str, flag: str) -> tuple[str, str, int | None]:
    """(scheme or "", host, port or None) of an address as the user wrote it."""
    text = url.strip()
    scheme = ""
    if "://" in text:
        scheme, text = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in SCHEMES:
            raise AbqaError(f"{flag} {url!r}: unknown scheme {scheme!r}; use {', '.join(s + '://' for s in SCHEMES)} "
                            "or none (host:port)")
    netloc, _, path = text.partition("/")
    if path.strip("/"):
        raise AbqaError(f"{flag} {url!r}: a Triton address has no path (/{path}); give [scheme://]host[:port]")
    return (scheme, *_host_port(netloc, url, flag))


def _host_port(netloc: str, url: str, flag: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` -> (host, port or None)."""
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        if not bracket or not _IPV6.match(host):
            raise AbqaError(f"{flag} {url!r}: not an IPv6 address in brackets; write it as [::1]:8001")
        if rest and not rest.startswith(":"):
            raise AbqaError(f"{flag} {url!r}: unexpected {rest!r} after the address; write [::1]:8001")
        port_text = rest[1:] if rest else None
    elif netloc.count(":") > 1:
        raise AbqaError(f"{flag} {url!r}: an IPv6 address goes in brackets, e.g. [{netloc}] or [::1]:8001")
    else:
        host, colon, port_text = netloc.partition(":")
        port_text = port_text if colon else None
        if not host:
            raise AbqaError(f"{flag} {url!r}: no host in it; give [scheme://]host[:port], e.g. 127.0.0.1:8001")
        if not _HOST_NAME.match(host):
            raise AbqaError(f"{flag} {url!r}: {host!r} is not a host name or an IP address")
    return host.lower(), _port(port_text, url, flag)


def _port(text: str | None, url: str, flag: str) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise AbqaError(f"{flag} {url!r}: port {text!r} is not a number from 1 to 65535")
    return int(text)


def _metrics_url(metrics_url: str | None, host: str, ssl: bool) -> str | None:
    """The Prometheus URL: given (normalised, `none` -> None) or beside the inference endpoint."""
    if metrics_url is None:
        return _web_url(host, METRICS_PORT, METRICS_PATH, ssl)
    text = metrics_url.strip()
    if text.lower() == "none":
        return None
    scheme, sep, rest = text.partition("://")
    default_port = None                 # a URL's own: 80 or 443
    if not sep:                         # host[:port], like --url: Triton's metrics port unless given
        scheme, rest, default_port = "http", text, METRICS_PORT
    if scheme.lower() not in ("http", "https"):
        raise AbqaError(f"--metrics-url {metrics_url!r}: Triton's metrics are served over http:// or https://")
    netloc, _, path = rest.partition("/")
    metrics_host, port = _host_port(netloc, metrics_url, "--metrics-url")
    port = port or default_port
    path = "/" + path.strip("/") if path.strip("/") else METRICS_PATH
    return _web_url(metrics_host, port, path, scheme.lower() == "https")


def _web_url(host: str, port: int | None, path: str, ssl: bool = False) -> str:
    return f"{'https' if ssl else 'http'}://{bracketed(host)}{f':{port}' if port else ''}{path}"
