"""Beam runs offline with the project's options: no connection leaves loopback.

Beam >= 2.68's DirectRunner hands suitable pipelines to the Prism runner, which
downloads a binary on first use (and silently falls back when that fails). The
guard below records every connect() to a non-loopback address, so the test
fails if anything even tries to reach the network.
"""

import ipaddress
import socket

import morphhr_tf.runtime  # noqa: F401  (runtime policy before TensorFlow)
from morphhr_tf.runtime import beam_pipeline_args

import pytest


def _is_loopback(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it would need DNS, i.e. the network


@pytest.fixture
def network_guard(monkeypatch):
    attempts = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(
            address
        ):
            attempts.append(address)
            raise OSError(f"network disabled in this test: connect to {address!r}")
        return real_connect(self, address)

    def guarded_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(
            address
        ):
            attempts.append(address)
            return 101  # ENETUNREACH
        return real_connect_ex(self, address)

    def no_dns(*args, **kwargs):
        host = args[0] if args else kwargs.get("host")
        if host not in (None, "localhost", "127.0.0.1", "::1", "0.0.0.0", ""):
            attempts.append(("getaddrinfo", host))
            raise socket.gaierror(f"network disabled in this test: lookup {host!r}")
        return real_getaddrinfo(*args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_ex)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    return attempts


@pytest.mark.parametrize("num_workers", [1, 2])
def test_tiny_beam_pipeline_runs_without_network(network_guard, num_workers):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    options = PipelineOptions(beam_pipeline_args(num_workers))
    with beam.Pipeline(options=options) as p:
        squares = (
            p
            | beam.Create(list(range(20)))
            | beam.Map(lambda x: x * x)
            | beam.combiners.ToList()
            | beam.Map(sorted)
        )
        assert_that(squares, equal_to([[x * x for x in range(20)]]))
    assert network_guard == []


def test_guard_catches_a_network_attempt(network_guard):
    # The guard itself must be able to fail: a real outbound connect is seen.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(OSError, match="network disabled"):
            s.connect(("203.0.113.7", 443))
    finally:
        s.close()
    assert network_guard == [("203.0.113.7", 443)]
