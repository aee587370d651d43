"""FailoverClient against real HTTP servers on loopback: one answers, one hangs or is gone."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from harness.cluster.api_client import (
    ApiClient,
    FailoverClient,
    health_nodes,
    node_name,
    roles_from_health,
)


class _Answers(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"messages": [{"id": "gBEGok"}]}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Errors(_Answers):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"errors": [{"code": 1011, "title": "Service not ready"}]}'
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Hangs(_Answers):
    release = threading.Event()

    def do_POST(self) -> None:  # noqa: N802
        self.release.wait(5)


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _Hangs.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def answering() -> Iterator[str]:
    yield from _serve(_Answers)


@pytest.fixture
def erroring() -> Iterator[str]:
    yield from _serve(_Errors)


@pytest.fixture
def hanging() -> Iterator[str]:
    _Hangs.release.clear()
    yield from _serve(_Hangs)


@pytest.fixture
def closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def test_a_refused_webapp_is_skipped_and_the_answering_one_kept(closed_port, answering):
    c = FailoverClient([ApiClient(closed_port), ApiClient(answering)])
    assert c.send_text("1555", "hi", timeout=1.0).status_code == 201
    assert (c.attempts, c.current) == (2, 1)
    assert c.send_text("1555", "again", timeout=1.0).status_code == 201
    assert c.attempts == 1


def test_a_webapp_that_does_not_answer_in_time_is_skipped(hanging, answering):
    c = FailoverClient([ApiClient(hanging), ApiClient(answering)])
    assert c.send_text("1555", "hi", timeout=0.3).status_code == 201
    assert (c.attempts, c.current) == (2, 1)


def test_when_every_webapp_fails_the_last_error_is_raised(hanging, closed_port):
    c = FailoverClient([ApiClient(closed_port), ApiClient(hanging)])
    with pytest.raises(requests.Timeout):
        c.send_text("1555", "hi", timeout=0.3)
    assert c.attempts == 2


def test_an_http_error_answer_is_returned_not_retried(erroring, answering):
    c = FailoverClient([ApiClient(erroring), ApiClient(answering)])
    assert c.send_text("1555", "hi", timeout=1.0).status_code == 503
    assert (c.attempts, c.current) == (1, 0)


def test_at_least_one_client_is_needed():
    with pytest.raises(ValueError, match="at least one"):
        FailoverClient([])


# -- the /health answer, parsed once (harness.cluster.api_client) ----------------------------------

def test_health_keys_and_entries_are_parsed_once():
    body = {"health": {
        "master-1:0f3a9c": {"role": "primary_master", "gateway_status": "uninitialized",
                            "extra": 1},
        "coreapp-2:77aa": {"errors": [{"code": 1011, "details": "connection refused"}]},
        "coreapp-3:88bb": {"errors": [{"code": 1011}]},
    }}
    roles = roles_from_health(body)
    assert roles == {"master-1": {"role": "primary_master", "gateway_status": "uninitialized"},
                     "coreapp-2": {"error": "connection refused"},
                     "coreapp-3": {"error": "unreachable"}}
    assert roles_from_health({}) == {}
    assert node_name("coreapp-1:abc123") == node_name("coreapp-1") == "coreapp-1"
    # a recorded health event's value: the same names, old-style keys accepted
    assert health_nodes({"nodes": roles}) == roles
    assert health_nodes({"nodes": {"webapp-1:cc": {"role": "webapp"}}}) == {
        "webapp-1": {"role": "webapp"}}
    assert health_nodes({"error": "webapp timeout"}) is None
    assert health_nodes({"nodes": []}) is None
