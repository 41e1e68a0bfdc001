"""GET /poem/stream: Server-Sent Events whose pieces join to /poem's continuation; errors before and during."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import aclosing

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from app.api.admission import SamplingGate, StopCheck
from app.api.metrics import Metrics
from app.api.streaming import open_pieces
from app.charlm.errors import WorkStopped

from .test_hardening import _never_disconnects, _request


def parse_events(wire: str) -> list[tuple[str, str]]:
    """(event type, data) per event of a text/event-stream body, read by the rules of the HTML standard:
    events end at a blank line, `data:` lines join with newlines, one space after the colon is dropped."""
    events = []
    for block in wire.replace("\r\n", "\n").split("\n\n"):
        kind, data = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                kind = value
            elif field == "data":
                data.append(value)
        if data:
            events.append((kind, "\n".join(data)))
    return events


def stream(client: TestClient, params: dict[str, object]) -> tuple[int, str, str]:
    with client.stream("GET", "/poem/stream", params=params) as r:
        return r.status_code, r.headers["content-type"], "".join(r.iter_text())


@pytest.mark.parametrize("params", [{"prompt": "Shall I compare thee ", "lines": 4, "seed": 7},
                                    {"prompt": "", "length": 300, "seed": 1, "temperature": 0.7}])
def test_the_pieces_join_to_the_poem_of_the_same_seed(client: TestClient, params: dict[str, object]) -> None:
    whole = client.get("/poem", params=params).json()["poem"]
    status, content_type, wire = stream(client, params)
    assert status == 200 and content_type.startswith("text/event-stream")
    events = parse_events(wire)
    assert events[-1] == ("end", '""')
    pieces = [json.loads(data) for kind, data in events[:-1]]
    assert all(kind == "message" for kind, _ in events[:-1]) and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == whole[len(str(params["prompt"])):]
    assert any("\n" in p for p in pieces) and any(" " in p for p in pieces)  # both came through JSON intact


def test_lines_beyond_2000_characters_are_all_written(client: TestClient) -> None:
    poem = client.get("/poem", params={"lines": 60, "seed": 1}).json()["poem"]
    assert len(poem) > 2000  # 60 sonnet lines are longer than the 2000 characters `length` allows
    assert sum(bool(line.strip()) for line in poem.split("\n")) == 60  # the line break ending the last is not drawn


@pytest.mark.parametrize("params, status, words", [
    ({"lenght": 5}, 422, "lenght"),
    ({"temperature": 0}, 422, "temperature"),
    ({"prompt": "snow \u2603"}, 422, "\u2603"),
    ({"model": "dinos"}, 422, "names, not text"),
    ({"model": "nope"}, 404, "nope"),
])
def test_errors_come_as_json_before_the_stream(client: TestClient, params: dict[str, object], status: int,
                                               words: str) -> None:
    r = client.get("/poem/stream", params=params)
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    assert words in r.json()["detail"]


def test_openapi_documents_the_stream(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/poem/stream"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"prompt", "length", "lines", "temperature", "top_k", "seed",
                                                    "model"}
    assert "text/event-stream" in op["responses"]["200"]["content"]


# --- the gate's rules, with generators whose behaviour the test controls ---------------------------------------

def _collect(gate: SamplingGate, make: object, keep: int | None = None) -> list[str]:
    async def run() -> list[str]:
        pieces = await open_pieces(gate, _request(_never_disconnects), make)  # type: ignore[arg-type]
        out = []
        async with aclosing(pieces.chunks()) as chunks:
            async for chunk in chunks:
                out.append(chunk)
                if keep is not None and len(out) == keep:
                    break  # the reader leaves
        return out

    return asyncio.run(run())


def test_a_budget_spent_mid_stream_raises_after_the_pieces_made() -> None:
    def make(should_stop: StopCheck) -> Iterator[str]:
        yield "first"
        while not should_stop():  # the gate's deadline (0.2 s) turns it True
            threading.Event().wait(0.01)
        raise WorkStopped("stopped")

    gate = SamplingGate(capacity=2, seconds=0.2, metrics=Metrics())
    with pytest.raises(HTTPException) as stopped:
        _collect(gate, make)
    assert stopped.value.status_code == 422 and "0.2 s of sampling" in stopped.value.detail
    assert gate.in_flight == 0


def test_a_reader_that_leaves_stops_the_sampler() -> None:
    seen_stop = threading.Event()

    def make(should_stop: StopCheck) -> Iterator[str]:
        yield "first"
        while not should_stop():
            threading.Event().wait(0.01)
        seen_stop.set()
        raise WorkStopped("stopped")

    gate = SamplingGate(capacity=2, seconds=60, metrics=Metrics())
    assert _collect(gate, make, keep=1) == ["first"]
    assert seen_stop.wait(30)


def test_a_full_gate_refuses_before_the_stream() -> None:
    release = threading.Event()

    def slow(should_stop: StopCheck) -> Iterator[str]:
        yield "a"
        release.wait(30)

    gate = SamplingGate(capacity=1, seconds=60, metrics=Metrics())

    async def scenario() -> HTTPException:
        first = await open_pieces(gate, _request(_never_disconnects), slow)
        with pytest.raises(HTTPException) as refused:
            await open_pieces(gate, _request(_never_disconnects), slow)
        release.set()
        assert [c async for c in first.chunks()] == ["a"]
        return refused.value

    assert asyncio.run(scenario()).status_code == 429


def test_work_that_makes_nothing_is_an_empty_stream() -> None:
    def nothing(should_stop: StopCheck) -> Iterator[str]:
        yield from ()

    assert _collect(SamplingGate(capacity=1, seconds=60, metrics=Metrics()), nothing) == []


def test_pieces_made_quickly_arrive_joined_and_in_order() -> None:
    text = "abc\n\ndef ghi"

    def fast(should_stop: StopCheck) -> Iterator[str]:
        yield from text

    chunks = _collect(SamplingGate(capacity=1, seconds=60, metrics=Metrics()), fast)
    assert "".join(chunks) == text and all(chunks)
