"""Issue 15: minimized regression fixtures for the contradiction classes the differential fuzzer found.

Each fixture is a generator (bytes from code, no unexplained binaries) of the smallest file of its
class, with the campaign finding it was minimized from. ``python -m tests.differential.fixtures``
rewrites ``tests/differential/found/`` from these generators (the committed copies are the same bytes,
kept so a reviewer can feed them to other tools). Payloads only ever name a marker-creating command;
nothing here loads anything. Not handled here: deciding verdicts (``test_differential.py`` does).
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FOUND = Path(__file__).with_name("found")
_SHELL = b"touch PWNED_MARKER"


@dataclass(frozen=True, slots=True)
class Fixture:
    """One contradiction class: its file name, root cause and generator."""

    name: str
    root_cause: str
    found_by: str
    build: Callable[[], bytes]


def truncated_text_pickle() -> bytes:
    """A protocol-0 ``posix.system`` call cut inside the UNICODE argument: no STOP, printable bytes.

    ``pickle.load`` resolves ``posix.system`` (GLOBAL) before it fails on the truncated argument, so
    the loader imports and reaches the gadget; weightguard reads the printable, STOP-less bytes as text.
    Minimized from campaign seed 7 index 589 / seed 15 index 502 (``insert_gadget`` then ``truncate``).
    """
    return b"cposix\nsystem\n(V" + _SHELL[:8]


def newline_less_global() -> bytes:
    """A protocol-0 list whose last opcode is GLOBAL ``os`` / ``systemX`` with no newline at the end.

    joblib's unpickler (``pickle._Unpickler``, pure Python) takes ``readline()[:-1]`` as the name, so
    at end of file it drops the last character instead of a newline and resolves ``os.system`` before
    failing on the missing STOP; the C unpickler says "truncated". Weightguard approves the STOP-less
    stream. Same family as root cause 1; minimized from campaign seed 15 indexes 6582 and 7011
    (``truncate`` / ``bit_flip`` of protocol-0 pickles).
    """
    return b"(lp0\nI1\nacos\nsystemX"


def _frame_split(body: bytes, inside: int) -> bytes:
    """Protocol 4 with one FRAME that ends ``inside`` bytes into ``body`` (the rest follows unframed)."""
    return b"\x80\x04\x95" + struct.pack("<Q", inside) + body


def frame_split_global() -> bytes:
    """A GLOBAL whose name line crosses the end of its FRAME.

    CPython's ``_pickle`` reading from a ``BytesIO`` (what ``torch.load`` hands it for a zip
    checkpoint's ``data.pkl``) drops the in-frame part of a line that crosses the frame end and
    resolves ``copyreg.uctor``; ``pickle.loads`` and a buffered file read ``copyreg._reconstructor``
    (allowlisted), as weightguard does. The loaders disagree with each other, so the stream's meaning
    depends on how it is opened; weightguard approves it. Minimized from ``insert_gadget`` in a
    protocol-4 FRAME (campaign seed 7).
    """
    return _frame_split(b"ccopyreg\n_reconstructor\n.", 18)


def frame_split_torch_zip() -> bytes:
    """The same frame-crossing GLOBAL as the ``data.pkl`` of a torch zip checkpoint (a BytesIO read)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in (
            ("archive/data.pkl", frame_split_global()),
            ("archive/byteorder", b"little"),
            ("archive/version", b"3\n"),
        ):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def joblib_member_of_a_torch_zip() -> bytes:
    """A joblib file whose array bytes hide a pickle program, stored as ``./data.pkl`` in a zip.

    The zip's layout makes it a torch checkpoint to the detector, and torch's plain-pickle reading of
    ``data.pkl`` sees only a BINBYTES constant; ``joblib.load`` of the extracted member skips the
    wrapper's array bytes and runs them as opcodes (``os.system``). Found by campaign seed 101 index
    3205 (``rename_member('model.joblib'->'./data.pkl')`` of the corpus case
    ``joblib_desync/reconstructor_wrapper.zip``); a pickle member is now also analysed as whatever
    else detection finds it to be.
    """
    from tests.corpus.joblib_numpy_cases import JOBLIB_BLOCKED
    from tests.corpus.spec import Payload

    spec = next(s for s in JOBLIB_BLOCKED if s.relpath.endswith("reconstructor_wrapper.zip"))
    built = spec.build(Payload(Path("PWNED_MARKER")))
    assert isinstance(built, bytes)
    with zipfile.ZipFile(io.BytesIO(built)) as inner:
        member = inner.read(inner.namelist()[0])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(zipfile.ZipInfo("./data.pkl", date_time=(2024, 1, 1, 0, 0, 0)), member)
    return out.getvalue()


FIXTURES = (
    Fixture("truncated_text_pickle.txt", "1 (text-looking pickles)", "seed 15 index 502", truncated_text_pickle),
    Fixture("newline_less_global.pkl", "1 (text-looking pickles; joblib)", "seed 15 index 7011", newline_less_global),
    Fixture("frame_split_global.pkl", "7 (opcode argument crossing a FRAME end)", "seed 7", frame_split_global),
    Fixture("frame_split_torch_zip.pt", "7 (opcode argument crossing a FRAME end)", "seed 7", frame_split_torch_zip),
    Fixture(
        "joblib_member_of_torch_zip.zip",
        "3 (joblib view of a torch zip member)",
        "seed 101 index 3205",
        joblib_member_of_a_torch_zip,
    ),
)


def write_found(folder: Path = FOUND) -> list[Path]:
    """Write every fixture into ``folder``."""
    folder.mkdir(exist_ok=True)
    written = []
    for fixture in FIXTURES:
        path = folder / fixture.name
        path.write_bytes(fixture.build())
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_found():
        print(path)
