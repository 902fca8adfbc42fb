"""The write protocol client alone: every class of InfluxDB answer, staged with httpx.MockTransport.

No server and no TCP: the transport is the seam. What a real influxd answers is covered in
test_writer.py; these pin the sorting of each answer into a Delivery, quickly.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from db.client import InfluxTarget
from db.dead_letter import DeadLetters
from db.sender import Delivery, Outcome, Sender

Handler = Callable[[httpx.Request], httpx.Response]


def lines(count: int, start: int = 0) -> list[str]:
    return [
        f"m,s=s{i % 3} v={i}i {1_700_000_000_000_000_000 + i}" for i in range(start, start + count)
    ]


def body_lines(request: httpx.Request) -> list[str]:
    content = request.content
    if request.headers.get("Content-Encoding") == "gzip":
        content = gzip.decompress(content)
    return content.decode().split("\n")


def error(status: int, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": message}, headers=headers)


class Recorder:
    """A MockTransport handler that records every request's lines and answers with `answer`."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.requests: list[tuple[str, list[str]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.url.path, body_lines(request) if request.content else []))
        return self.answer(request)


def make_sender(tmp_path: Path, answer: Handler, **kwargs: object) -> tuple[Sender, Recorder]:
    recorder = Recorder(answer)
    target = InfluxTarget("http://influx.test:8086", "hf", gzip=bool(kwargs.pop("gzip", False)))
    sender = Sender(
        target,
        DeadLetters(tmp_path / "dead_letter"),
        transport=httpx.MockTransport(recorder),
        **kwargs,  # type: ignore[arg-type]
    )
    return sender, recorder


def dead_letters(tmp_path: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((tmp_path / "dead_letter").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def refuse_bad(request: httpx.Request) -> httpx.Response:
    """Like influxd: write the good lines, refuse the bad ones with a 400 naming the count."""
    if request.url.path == "/ping":
        return httpx.Response(204)
    bad = [line for line in body_lines(request) if "bad" in line]
    if not bad:
        return httpx.Response(204)
    return error(400, f'partial write: unable to parse "{bad[0]}" dropped={len(bad)}')


async def test_2xx_is_ok_with_every_line_written(tmp_path):
    sender, recorder = make_sender(tmp_path, lambda r: httpx.Response(204))
    batch = lines(10)
    assert await sender.send(batch) == Delivery(Outcome.OK, written=10)
    assert recorder.requests == [("/write", batch)]
    await sender.aclose()


async def test_the_request_carries_db_precision_and_gzip(tmp_path):
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    sender, _ = make_sender(tmp_path, answer, gzip=True)
    assert (await sender.send(lines(3))).outcome is Outcome.OK
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "http://influx.test:8086/write?db=hf&precision=ns"
    assert request.headers["Content-Encoding"] == "gzip"
    assert body_lines(request) == lines(3)
    await sender.aclose()


async def test_400_bisects_keeps_the_good_lines_and_dead_letters_the_bad(tmp_path):
    sender, recorder = make_sender(tmp_path, refuse_bad)
    batch = lines(16)
    batch[5] = "m,s=bad v=1i 1"
    batch[11] = "m,s=bad v=2i 2"
    result = await sender.send(batch)
    assert result.outcome is Outcome.DEAD_LETTERED
    assert result.outcome is not Outcome.OK and result.settled
    assert (result.written, result.dead_lettered) == (14, 2)
    assert "partial write" in result.reason
    assert [r["line"] for r in dead_letters(tmp_path)] == [batch[5], batch[11]]
    written = [line for path, sent in recorder.requests for line in sent if "bad" not in line]
    assert set(written) == set(batch) - {batch[5], batch[11]}
    await sender.aclose()


async def test_400_that_dropped_every_line_is_not_bisected(tmp_path):
    sender, recorder = make_sender(tmp_path, lambda r: error(400, "field type conflict dropped=4"))
    result = await sender.send(lines(4))
    assert result == Delivery(Outcome.DEAD_LETTERED, "field type conflict dropped=4", None, 0, 4)
    assert len(recorder.requests) == 1
    assert len(dead_letters(tmp_path)) == 4
    await sender.aclose()


async def test_an_unreadable_answer_from_a_live_server_is_a_refused_line(tmp_path):
    """influxd echoes the refused line in a header; a control character makes it unreadable."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ping":
            return httpx.Response(204)
        if any("\x0b" in line for line in body_lines(request)):
            raise httpx.RemoteProtocolError("illegal header value", request=request)
        return httpx.Response(204)

    sender, _ = make_sender(tmp_path, answer)
    batch = [*lines(3), "bad\x0bline 1", *lines(4, 3)]
    result = await sender.send(batch)
    assert (result.outcome, result.written, result.dead_lettered) == (Outcome.DEAD_LETTERED, 7, 1)
    assert [r["line"] for r in dead_letters(tmp_path)] == ["bad\x0bline 1"]
    await sender.aclose()


async def test_413_splits_until_each_part_fits(tmp_path):
    def answer(request: httpx.Request) -> httpx.Response:
        if len(body_lines(request)) > 3:
            return error(413, "Request Entity Too Large")
        return httpx.Response(204)

    sender, recorder = make_sender(tmp_path, answer)
    assert await sender.send(lines(10)) == Delivery(Outcome.OK, written=10)
    delivered = [sent for _, sent in recorder.requests if len(sent) <= 3]
    assert [line for part in delivered for line in part] == lines(10)
    assert dead_letters(tmp_path) == []
    await sender.aclose()


async def test_413_for_a_single_line_dead_letters_it_and_says_so(tmp_path):
    sender, _ = make_sender(tmp_path, lambda r: error(413, "Request Entity Too Large"))
    result = await sender.send(lines(1))
    assert result == Delivery(Outcome.DEAD_LETTERED, "413: Request Entity Too Large", None, 0, 1)
    assert [r["reason"] for r in dead_letters(tmp_path)] == ["413: Request Entity Too Large"]
    await sender.aclose()


async def test_404_database_not_found_creates_it_once_then_sends_again(tmp_path):
    created: list[bool] = []

    async def create() -> bool:
        created.append(True)
        return True

    def answer(request: httpx.Request) -> httpx.Response:
        if not created:
            return error(404, 'database not found: "hf"')
        return httpx.Response(204)

    sender, recorder = make_sender(tmp_path, answer, on_database_missing=create)
    assert await sender.send(lines(5)) == Delivery(Outcome.OK, written=5)
    assert created == [True]
    assert len(recorder.requests) == 2
    await sender.aclose()


async def test_404_that_stays_after_creating_holds(tmp_path):
    calls: list[bool] = []

    async def create() -> bool:
        calls.append(True)
        return True

    sender, recorder = make_sender(
        tmp_path, lambda r: error(404, 'database not found: "hf"'), on_database_missing=create
    )
    result = await sender.send(lines(5))
    assert result.outcome is Outcome.HOLD
    assert result.reason == 'database missing: database not found: "hf"'
    assert (len(calls), len(recorder.requests)) == (1, 2)
    await sender.aclose()


async def test_404_without_a_way_to_create_holds(tmp_path):
    sender, _ = make_sender(tmp_path, lambda r: error(404, 'database not found: "hf"'))
    assert (await sender.send(lines(1))).outcome is Outcome.HOLD
    await sender.aclose()


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_hold(tmp_path, status):
    sender, _ = make_sender(tmp_path, lambda r: error(status, "authorization failed"))
    result = await sender.send(lines(2))
    assert result == Delivery(
        Outcome.HOLD,
        f"InfluxDB refused the credentials ({status}): set HYPERFLUX_INFLUX_USERNAME and "
        "HYPERFLUX_INFLUX_PASSWORD",
    )
    assert not result.settled
    await sender.aclose()


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (429, "7", 7.0),
        (503, "0.5", 0.5),
        (503, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: now
        (500, None, None),
        (502, "soon", None),  # unreadable: our own backoff
    ],
)
async def test_429_and_5xx_retry_with_the_servers_retry_after(
    tmp_path, status, retry_after, expected
):
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    sender, _ = make_sender(tmp_path, lambda r: error(status, "overloaded", **headers))
    result = await sender.send(lines(3))
    assert result == Delivery(
        Outcome.RETRY, f"InfluxDB answered {status}: overloaded", expected, 0, 0
    )
    await sender.aclose()


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout, httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError]
)
async def test_timeouts_and_connection_errors_retry(tmp_path, exc):
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc("no answer", request=request)  # /ping too: the server is gone

    sender, _ = make_sender(tmp_path, answer)
    result = await sender.send(lines(3))
    assert result == Delivery(Outcome.RETRY, f"InfluxDB unreachable ({exc.__name__})")
    await sender.aclose()


async def test_progress_before_a_retry_is_counted_and_the_outcome_is_retry(tmp_path):
    """413 splits; the first half lands, the second meets a 503: the batch must be sent again."""

    def answer(request: httpx.Request) -> httpx.Response:
        sent = body_lines(request)
        if len(sent) > 4:
            return error(413, "too large")
        return httpx.Response(204) if sent[0] == lines(1)[0] else error(503, "busy")

    sender, _ = make_sender(tmp_path, answer)
    result = await sender.send(lines(8))
    assert result == Delivery(Outcome.RETRY, "InfluxDB answered 503: busy", None, 4, 0)
    await sender.aclose()


async def test_an_injected_client_is_used_and_left_open(tmp_path):
    recorder = Recorder(lambda r: httpx.Response(204))
    client = httpx.AsyncClient(
        base_url="http://elsewhere.test", transport=httpx.MockTransport(recorder)
    )
    sender = Sender(InfluxTarget("http://unused.test", "hf"), DeadLetters(tmp_path), client=client)
    assert (await sender.send(lines(2))).outcome is Outcome.OK
    await sender.aclose()
    assert not client.is_closed
    assert recorder.requests == [("/write", lines(2))]
    await client.aclose()
