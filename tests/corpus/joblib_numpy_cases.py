"""Corpus cases for issue 15: joblib files whose arrays desynchronise a scanner from ``joblib.load``.

Each malicious builder writes a joblib stream by hand (protocol 4 opcodes) in which the
bytes ``joblib.load`` executes and the bytes a naive array-skipping scanner executes
differ: the payload runs under ``joblib.load`` (or ``pickle.load``) while the naive view
sees a harmless constant or array data. ``RAW`` maps a case name to its builder so tests
can prove each one with the real loader; every case is registered raw, gzip-compressed
(``joblib.load`` decompresses gzip itself) and as a zip member. The benign cases are
ordinary ``joblib.dump`` outputs and the false alarms of issue 15 (Python 3.13 pathlib
pickles, nested jagged tensors). ``ZFILE_RAW`` holds the red team's old-joblib ``ZF`` files
(printable-text zfiles, loose length fields, a joblib >= 0.12 stream inside a zfile), each
registered raw, in a tar, in a zip and as a model folder's ``model.joblib``, plus a benign
zfile of plain numbers. Not handled here: scanning.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zlib
from collections.abc import Callable, Mapping

from tests.corpus.spec import CaseList, Payload
from tests.corpus.writers import zip_bytes

JOBLIB_BLOCKED = CaseList("blocked")
JOBLIB_APPROVED = CaseList("approved")
_ISSUE = "issue 15 (joblib array desync)"


def su(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _shape(*dims: int) -> bytes:
    return b"(" + b"".join(_int(d) for d in dims) + b"t"


def _dtype(spec: object) -> bytes:
    """``numpy.dtype(spec)`` as pickle writes it (GLOBAL, REDUCE, BUILD), without PROTO and STOP."""
    import numpy as np

    return pickle.dumps(np.dtype(spec), protocol=2)[2:-1]  # type: ignore[call-overload]


def _wrapper(pairs: bytes, *, make: bytes | None = None) -> bytes:
    """A NumpyArrayWrapper (NEWOBJ, or ``make``) built with the dict items ``pairs``."""
    new = make if make is not None else su("joblib.numpy_pickle") + su("NumpyArrayWrapper") + b"\x93)\x81"
    return new + b"}(" + pairs + b"ub"


def _attrs(shape: bytes, dtype: bytes, align: bytes = b"N", *extra: bytes) -> bytes:
    return (
        su("shape")
        + shape
        + su("dtype")
        + dtype
        + su("order")
        + su("C")
        + su("allow_mmap")
        + b"\x89"
        + b"".join(extra)
        + su("numpy_array_alignment_bytes")
        + align
    )


def _payload(p: Payload) -> bytes:
    """``os.system(shell)`` pushed on the stack (GLOBAL, BINUNICODE, TUPLE1, REDUCE)."""
    cmd = p.shell.encode()
    return b"cos\nsystem\n" + b"X" + struct.pack("<I", len(cmd)) + cmd + b"\x85R"


def _swallow(hidden: bytes, lead: int = 0) -> bytes:
    """BINBYTES whose length covers ``lead`` more bytes and then ``hidden``: a naive walker sees a constant."""
    return b"B" + struct.pack("<I", lead + len(hidden))


def _stream(body: bytes) -> bytes:
    return b"\x80\x04(" + body + b"l."


def duplicate_shape_key(p: Payload) -> bytes:
    """The wrapper state says shape (N,) then shape (0,): joblib keeps the last, reads nothing, runs the payload."""
    hidden = _payload(p)
    attrs = _attrs(_shape(len(hidden)), _dtype("u1")) + su("shape") + _shape(0)
    return _stream(_wrapper(attrs) + hidden)


def alignment_zero(p: Payload) -> bytes:
    """``numpy_array_alignment_bytes`` 0: joblib still reads a padding byte and padding (``is not None``)."""
    hidden = _payload(p)
    pad = 20  # joblib reads the padding byte, 20 padding bytes, then the 1-byte array
    padding = _swallow(hidden, pad - 5 + 1).ljust(pad, b"\xff")
    return _stream(_wrapper(_attrs(_shape(1), _dtype("u1"), _int(0))) + bytes([pad]) + padding + b"\x07" + hidden)


def frame_spans_array(p: Payload) -> bytes:
    """A FRAME holds the wrapper and the payload: joblib reads the array after the frame, runs the frame's rest."""
    hidden = _payload(p)
    framed = b"(" + _wrapper(_attrs(_shape(len(hidden)), _dtype("u1"))) + hidden
    array = b"N" * len(hidden)  # what joblib reads as array data; a naive walker parses it as opcodes
    return b"\x80\x04\x95" + struct.pack("<Q", len(framed)) + framed + array + b"l."


def unicode_without_state(p: Payload) -> bytes:
    """dtype ``U5`` rebuilt without BUILD: its item size is 20 bytes, not 5."""
    hidden = _payload(p)
    dtype = b"cnumpy\ndtype\n" + su("U5") + b"\x89\x88\x87R"
    lead = 20 - 5 - 5  # a naive walker resumes 5 bytes in; joblib after 20
    body = _wrapper(_attrs(_shape(1), dtype)) + b"\x00" * 5 + _swallow(hidden, lead) + b"\x00" * lead + hidden
    return _stream(body)


def object_field_past_kept_items(p: Payload) -> bytes:
    """A structured dtype whose 65th field is an object: joblib reads a nested pickle where raw bytes were assumed."""
    import numpy as np

    fields = [(f"f{i}", "u1") for i in range(64)] + [("o", "O")]
    nested = b"\x80\x02" + _payload(p) + b"."
    itemsize = np.dtype(fields).itemsize
    count = -(-len(nested) // itemsize)
    data = nested.ljust(count * itemsize, b"N")
    return _stream(_wrapper(_attrs(_shape(count), _dtype(fields))) + data)


def reconstructor_wrapper(p: Payload) -> bytes:
    """Protocol 0/1 style wrapper (``copyreg._reconstructor``): joblib reads its array, a naive walker does not."""
    hidden = _payload(p)
    make = b"ccopyreg\n_reconstructor\n" + su("joblib.numpy_pickle") + su("NumpyArrayWrapper") + b"\x93"
    make += b"cbuiltins\nobject\nN\x87R"
    return _stream(_wrapper(_attrs(_shape(5), _dtype("u1")), make=make) + _swallow(hidden) + hidden)


def plain_pickle_in_array(p: Payload) -> bytes:
    """A joblib file (no alignment) whose array bytes are a pickle: ``pickle.load`` runs them, joblib does not."""
    hidden = _payload(p) + b"."
    return _stream(_wrapper(_attrs(_shape(len(hidden)), _dtype("u1"))) + hidden)


RAW: dict[str, tuple[Callable[[Payload], bytes], str]] = {
    "duplicate_shape_key": (duplicate_shape_key, "joblib"),
    "alignment_zero": (alignment_zero, "joblib"),
    "frame_spans_array": (frame_spans_array, "joblib"),
    "unicode_without_state": (unicode_without_state, "joblib"),
    "object_field_past_kept_items": (object_field_past_kept_items, "joblib"),
    "reconstructor_wrapper": (reconstructor_wrapper, "joblib"),
    "plain_pickle_in_array": (plain_pickle_in_array, "pickle"),
}
"""Case name -> (builder, the loader that runs the payload: ``joblib.load`` or ``pickle.load``)."""


def gzipped(build: Callable[[Payload], bytes]) -> Callable[[Payload], bytes]:
    """The case gzip-compressed, as ``joblib.dump(compress="gzip")`` writes it (fixed mtime)."""
    return lambda p: gzip.compress(build(p), mtime=0)


def zipped(build: Callable[[Payload], bytes]) -> Callable[[Payload], bytes]:
    """The case as the member ``model.joblib`` of a zip archive."""
    return lambda p: zip_bytes([("model.joblib", build(p))])


for _name, (_build, _loader) in RAW.items():
    JOBLIB_BLOCKED.case(f"joblib_desync/{_name}.joblib", _ISSUE, needs="numpy")(_build)
    if _loader == "joblib":  # pickle.load does not decompress: the plain-pickle case is raw or zipped only
        JOBLIB_BLOCKED.case(f"joblib_desync/{_name}.joblib.gz", _ISSUE, needs="numpy")(gzipped(_build))
    JOBLIB_BLOCKED.case(f"joblib_desync/{_name}.zip", _ISSUE, needs="numpy")(zipped(_build))


# -- joblib < 0.10 "ZF" zfiles (red team, issue 15) -----------------------------------------------
# joblib.load reads any file starting with b"ZF" with numpy_pickle_compat.read_zfile: int(field, 16)
# over the next 19 bytes, one optional space, zlib.decompress of the rest, then ZipNumpyUnpickler
# (pickle._Unpickler reading no array bytes). Each case runs its payload under joblib.load.
_ZF_ISSUE = "issue 15 (red team: old joblib ZF zfile read as text or with a loose length field)"
_STORED_LEN = 0x4020  # LEN bytes " @", NLEN bytes DF BF: valid UTF-8 (U+07FF) without control bytes


def _zf_payload(p: Payload) -> bytes:
    """A protocol-0 pickle calling ``os.system(shell)``: plain printable ASCII."""
    return b"cos\nsystem\n(V" + p.shell.encode() + b"\ntR."


def _printable_stored_zlib(data: bytes) -> bytes:
    """A zlib stream of one *stored* deflate block whose every byte is printable UTF-8.

    Header ``x^`` (valid FCHECK), block byte ``A`` (BFINAL, BTYPE 00), LEN/NLEN chosen UTF-8-valid;
    ``data`` is padded with printable filler until the Adler-32 trailer is printable ASCII.
    """
    for k in range(100_000):
        body = (data + b"# %d " % k).ljust(_STORED_LEN, bytes([0x21 + k % 94]))  # the fill moves A widely
        adler = struct.pack(">I", zlib.adler32(body))
        if all(0x20 <= b < 0x7F for b in adler):
            return b"x^A" + struct.pack("<HH", _STORED_LEN, _STORED_LEN ^ 0xFFFF) + body + adler
    raise AssertionError("no printable Adler-32 found")


def zfile_upper_hex_text(p: Payload) -> bytes:
    """``ZF0X...`` (upper-case hex, which int(x, 16) takes) and a printable stored zlib block: valid UTF-8 text."""
    blob = b"ZF0X%017X" % _STORED_LEN + _printable_stored_zlib(_zf_payload(p))
    blob.decode("utf-8")
    return blob


def zfile_space_text(p: Payload) -> bytes:
    """Lower-case hex and the extra space joblib <= 0.8.4 wrote, then a printable stored zlib block."""
    return b"ZF0x%017x " % _STORED_LEN + _printable_stored_zlib(_zf_payload(p))


def _zfile(field: bytes, inner: bytes) -> bytes:
    assert len(field) in (19, 20), field
    return b"ZF" + field + zlib.compress(inner)


ZFILE_HEADERS: dict[str, Callable[[int], bytes]] = {
    "upper": lambda n: b"0X%017X" % n,
    "tab": lambda n: (b"0x%x" % n).rjust(18) + b"\t",
    "underscore": lambda n: b"0x" + (b"%016x" % n)[:8] + b"_" + (b"%016x" % n)[8:],
    "sign": lambda n: (b"+0x%x" % n).ljust(19),
    "space": lambda n: (b"0x%x" % n).ljust(19) + b" ",
}
"""Length fields joblib's ``int(field, 16)`` accepts (the last one with joblib <= 0.8.4's extra space)."""


def _zfile_header_case(name: str) -> Callable[[Payload], bytes]:
    def build(p: Payload) -> bytes:
        inner = b"\x80\x02" + _payload(p) + b"."
        return _zfile(ZFILE_HEADERS[name](len(inner)), inner)

    return build


def zfile_numpy_wrapper(p: Payload) -> bytes:
    """A ZF file holding a joblib >= 0.12 stream: ZipNumpyUnpickler reads no array, it runs the 'array' bytes."""
    inner = plain_pickle_in_array(p)
    return _zfile((b"0x%x" % len(inner)).ljust(19), inner)


def zlib_stored_text(p: Payload) -> bytes:
    """joblib's zlib prefix (``x``) with the printable stored block: text that joblib.load inflates."""
    return _printable_stored_zlib(b"\x80\x02" + _payload(p) + b".")


def tarred(build: Callable[[Payload], bytes], name: str = "model.joblib") -> Callable[[Payload], bytes]:
    """The case as the member ``name`` of a tar archive (fixed mtime)."""

    def wrap(p: Payload) -> bytes:
        data, out = build(p), io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as archive:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
        return out.getvalue()

    return wrap


def model_dir(build: Callable[[Payload], bytes]) -> Callable[[Payload], Mapping[str, bytes]]:
    """The case as ``model.joblib`` of a model folder (every file of a blocked case must block)."""
    return lambda p: {"model.joblib": build(p)}


ZFILE_RAW: dict[str, Callable[[Payload], bytes]] = {
    "upper_hex_text.txt": zfile_upper_hex_text,
    "space_text.joblib": zfile_space_text,
    **{f"header_{name}.joblib": _zfile_header_case(name) for name in ZFILE_HEADERS},
    "numpy_wrapper.joblib": zfile_numpy_wrapper,
    "zlib_stored_text.joblib": zlib_stored_text,
}
"""Corpus file name -> builder; ``joblib.load`` of each file runs its payload."""

for _name, _build in ZFILE_RAW.items():
    _needs = "numpy" if _name == "numpy_wrapper.joblib" else None
    JOBLIB_BLOCKED.case(f"joblib_zfile/{_name}", _ZF_ISSUE, needs=_needs)(_build)
    _stem = _name.partition(".")[0]
    JOBLIB_BLOCKED.case(f"joblib_zfile/{_stem}.tar", _ZF_ISSUE, needs=_needs)(tarred(_build))
    JOBLIB_BLOCKED.case(f"joblib_zfile/{_stem}.zip", _ZF_ISSUE, needs=_needs)(zipped(_build))
    JOBLIB_BLOCKED.case(f"joblib_zfile/{_stem}_model", _ZF_ISSUE, needs=_needs)(model_dir(_build))


def old_zfile_numbers(_: Payload) -> bytes:
    """Plain numeric data as joblib 0.8's writer stored it (``write_zfile``: ZF, padded hex length, zlib)."""
    inner = pickle.dumps({"coef": [0.5, -1.25, 3.0], "intercept": 0.1, "n_iter": 7, "classes": (0, 1)}, protocol=2)
    return b"ZF" + hex(len(inner)).encode().ljust(19) + zlib.compress(inner, 1)


JOBLIB_APPROVED.case("joblib_zfile/old_zfile_numbers.joblib", "issue 15 (joblib < 0.10 ZF file)")(old_zfile_numbers)


def benign_arrays() -> dict[str, object]:
    """Arrays of every kind ``joblib.dump`` writes: dtypes, unicode, structured, Fortran order, object data."""
    import numpy as np

    rng = np.random.default_rng(15)
    return {
        "w": rng.standard_normal((20, 3)).astype("f4"), "fortran": np.asfortranarray(rng.standard_normal((4, 3))),
        "text": np.array(["ab", "cdé"]), "big_endian_text": np.array(["x"], dtype=">U7"), "raw": np.array([b"ab"]),
        "rec": np.zeros(3, dtype=[("a", "f4"), ("b", "i2", (2,))]), "objects": np.array([1, "x", None], dtype=object),
        "dates": np.array(["2020-01-01"], dtype="M8[ns]"), "empty": np.zeros((0, 4)), "scalar": np.array(3.0),
        "complex": np.ones(2, dtype=np.complex64), "flags": np.array([True, False]), "meta": {"classes": [0, 1]},
    }  # fmt: skip


def _dump(compress: object, protocol: int | None = None) -> Callable[[Payload], bytes]:
    def build(_: Payload) -> bytes:
        import joblib

        out = io.BytesIO()
        joblib.dump(benign_arrays(), out, compress=compress, protocol=protocol)
        return out.getvalue()

    return build


for _compress, _protocol, _tag in [(0, None, "plain"), (3, None, "zlib"), (("gzip", 3), None, "gzip"),
                                    (("xz", 3), None, "xz"), (0, 0, "protocol0"), (0, 2, "protocol2")]:  # fmt: skip
    JOBLIB_APPROVED.case(f"joblib_dump/{_tag}.joblib", "issue 15 (ordinary joblib.dump)", needs="joblib")(
        _dump(_compress, _protocol)
    )


def _pathlib_313(cls: str) -> Callable[[Payload], bytes]:
    """``pickle.dumps({"out": pathlib.<cls>("runs", "exp1")}, protocol=4)`` as Python 3.13 writes it."""

    def build(_: Payload) -> bytes:
        path = su("pathlib._local") + su(cls) + b"\x93(" + su("runs") + su("exp1") + b"tR"
        body = b"}" + su("out") + path + b"s"
        return b"\x80\x04\x95" + struct.pack("<Q", len(body) + 1) + body + b"."

    return build


for _cls in ("PosixPath", "PureWindowsPath"):
    JOBLIB_APPROVED.case(f"pathlib/py313_{_cls}.pkl", "issue 15 (Python 3.13 pathlib._local pickles)")(
        _pathlib_313(_cls)
    )
