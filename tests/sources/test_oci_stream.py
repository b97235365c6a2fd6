"""issue 17: a blob's body read as it downloads: any read sizes, the cap, and errors from the prefetch thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from weightguard.sources.oci_stream import ResponseStream
from weightguard.sources.oci_unpack import FetchError

CHUNKS = [bytes([i]) * (1000 + i) for i in range(20)]


@pytest.mark.parametrize("prefetch", [0, 3])
@pytest.mark.parametrize("size", [1, 7, 512, 10240, -1])
def test_reads_of_any_size_return_the_body_in_order(prefetch: int, size: int) -> None:
    stream = ResponseStream(iter(CHUNKS), 10**9, "blob", prefetch=prefetch)
    parts = []
    while piece := stream.read(size):
        assert size < 0 or len(piece) <= size
        parts.append(piece)
    assert b"".join(parts) == b"".join(CHUNKS) and stream.read(10) == b"" and stream.read(10) == b""
    stream.close()


@pytest.mark.parametrize("prefetch", [0, 3])
def test_a_body_over_the_cap_is_refused(prefetch: int) -> None:
    stream = ResponseStream(iter(CHUNKS), 5000, "blob sha256:x", prefetch=prefetch)
    with pytest.raises(FetchError, match="blob sha256:x is over 5000 bytes"):
        stream.read(-1)
    stream.close()


def test_an_error_while_receiving_reaches_the_reader_and_closing_stops_the_thread() -> None:
    def broken() -> Iterator[bytes]:
        yield b"a" * 100
        raise ConnectionError("peer went away")

    stream = ResponseStream(broken(), 10**9, "blob", prefetch=2)
    assert stream.read(100) == b"a" * 100
    with pytest.raises(ConnectionError, match="peer went away"):
        stream.read(100)
    closed: list[bool] = []
    endless = ResponseStream(
        iter(lambda: b"x" * 10, None), 10**9, "blob", prefetch=2, on_close=lambda: closed.append(True)
    )
    assert endless.read(5) == b"xxxxx"
    endless.close()  # the thread blocked on a full queue notices and ends
    assert closed == [True] and not endless._thread.is_alive()  # type: ignore[union-attr]
