"""Issue 15: deterministic mutations of seed files for the differential fuzzer.

:func:`mutate` applies one to three operators chosen by a :class:`random.Random` and returns the
new bytes with a description of every step, so a contradiction can be replayed and minimized:
byte-level (bit flips, truncation, insertion, deletion, duplication, length lies in 1/4/8-byte
integers), pickle-level (opcode substitution at opcode boundaries, inserted GLOBAL/STACK_GLOBAL +
REDUCE sequences naming a marker-creating gadget), container-level for zip and tar (mutate a
member, duplicate a member with a gadget, rename or change the case of a member, reorder) and
nesting (wrap in zip/tar/gzip/xz/bz2). Opcode positions come from :mod:`pickletools` (a walker that
never executes anything); it only chooses *where* to mutate, never what a file is.
Not handled here: scanning or loading.
"""

from __future__ import annotations

import io
import pickletools
import random
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from tests.corpus.writers import zip_bytes
from tests.differential.seeds import WRAPPERS, _tar

# Every opcode byte CPython's unpickler knows (pickle protocol 0-5).
OPCODES = bytes(sorted({op.code.encode("latin-1")[0] for op in pickletools.opcodes}))

# (module, name) of callables that would create the marker or reach code; plus spellings
# weightguard might resolve differently from the loader (``_compat_pickle`` names, submodules).
GADGETS = (
    ("os", "system"), ("posix", "system"), ("nt", "system"), ("subprocess", "getoutput"), ("os", "popen"),
    ("builtins", "exec"), ("builtins", "eval"), ("__builtin__", "eval"), ("builtins", "getattr"),
    ("runpy", "_run_code"), ("pickle", "loads"), ("_pickle", "loads"), ("torch", "load"),
    ("numpy", "load"), ("torch.serialization", "load"), ("copyreg", "_reconstructor"),
    ("collections", "OrderedDict"), ("builtins", "set"), ("_codecs", "encode"), ("exceptions", "eval"),
    ("UserDict", "UserDict"), ("copy_reg", "_reconstructor"), ("numpy.core.multiarray", "_reconstruct"),
    ("torch._utils", "_rebuild_tensor_v2"), ("builtins", "str.join"), ("builtins", "object.__subclasses__"),
)  # fmt: skip
_SHELL = "touch PWNED_MARKER"


def _gadget_bytes(rng: random.Random, module: str, name: str) -> bytes:
    """A stack-neutral call ``module.name("touch PWNED_MARKER")`` followed by POP."""
    arg = _SHELL.encode()
    if rng.random() < 0.5:  # protocol 0 GLOBAL
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n(V" + arg + b"\ntR0"
    push = b"".join(b"\x8c" + bytes([len(s)]) + s for s in (module.encode(), name.encode()))
    return push + b"\x93\x8c" + bytes([len(arg)]) + arg + b"\x85R0"


def _boundaries(data: bytes) -> list[int]:
    """Opcode start offsets of the pickle at the head of ``data`` (as far as it parses)."""
    found: list[int] = []
    try:
        for _, _, pos in pickletools.genops(io.BytesIO(data)):
            if pos is not None:
                found.append(pos)
            if len(found) > 4096:
                break
    except Exception:  # noqa: BLE001, S110 - a broken stream still has the boundaries found so far
        pass
    return found


Op = Callable[[random.Random, bytes], tuple[bytes, str]]


def bit_flip(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    if not data:
        return data, "bit_flip(empty)"
    pos = rng.randrange(len(data))
    bit = rng.randrange(8)
    out = bytearray(data)
    out[pos] ^= 1 << bit
    return bytes(out), f"bit_flip({pos},{bit})"


def truncate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    cut = rng.randrange(len(data) + 1)
    return data[:cut], f"truncate({cut})"


def insert(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    pos = rng.randrange(len(data) + 1)
    blob = rng.choice([bytes([rng.randrange(256)]), rng.randbytes(rng.randrange(1, 16)), b"\n", b"."])
    return data[:pos] + blob + data[pos:], f"insert({pos},{blob.hex()})"


def delete(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    if not data:
        return data, "delete(empty)"
    pos = rng.randrange(len(data))
    size = rng.randrange(1, 16)
    return data[:pos] + data[pos + size :], f"delete({pos},{size})"


def duplicate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    if not data:
        return data, "duplicate(empty)"
    pos = rng.randrange(len(data))
    size = rng.randrange(1, 64)
    return data[: pos + size] + data[pos : pos + size] + data[pos + size :], f"duplicate({pos},{size})"


def length_lie(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    width = rng.choice([1, 4, 8])
    if len(data) < width:
        return data, "length_lie(short)"
    pos = rng.randrange(len(data) - width + 1)
    fmt = {1: "<B", 4: "<I", 8: "<Q"}[width]
    value = struct.unpack_from(fmt, data, pos)[0]
    new = rng.choice([0, 1, value + 1, max(value - 1, 0), value * 2, (1 << (8 * width)) - 1, value + 16])
    new &= (1 << (8 * width)) - 1
    out = bytearray(data)
    struct.pack_into(fmt, out, pos, new)
    return bytes(out), f"length_lie({pos},{width},{value}->{new})"


def opcode_swap(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    spots = _boundaries(data)
    if not spots:
        return bit_flip(rng, data)
    pos = rng.choice(spots)
    new = rng.choice(OPCODES)
    out = bytearray(data)
    old = out[pos]
    out[pos] = new
    return bytes(out), f"opcode_swap({pos},{old:#04x}->{new:#04x})"


def insert_gadget(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    spots = _boundaries(data) or [0]
    pos = rng.choice(spots)
    module, name = rng.choice(GADGETS)
    return data[:pos] + _gadget_bytes(rng, module, name) + data[pos:], f"insert_gadget({pos},{module}.{name})"


def _gadget_pickle(rng: random.Random) -> tuple[bytes, str]:
    module, name = rng.choice(GADGETS[:10])
    return b"\x80\x02" + _gadget_bytes(rng, module, name)[:-1] + b".", f"{module}.{name}"


# -- containers ------------------------------------------------------------------------------
def _zip_members(data: bytes) -> list[tuple[str, bytes]] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return [(info.filename, archive.read(info)) for info in archive.infolist()]
    except Exception:  # noqa: BLE001 - not a zip we can repack
        return None


def _tar_members(data: bytes) -> list[tuple[str, bytes]] | None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            out = []
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    out.append((member.name, handle.read()))
            return out or None
    except Exception:  # noqa: BLE001 - not a tar we can repack
        return None


def _rename(rng: random.Random, name: str) -> str:
    choice = rng.randrange(5)
    if choice == 0:
        return name.upper()
    if choice == 1:
        return name.replace("data.pkl", "DATA.PKL").replace(".pkl", ".PKL")
    if choice == 2:
        return "./" + name
    if choice == 3:
        return name + rng.choice(["/", " ", "\x00x", ".bak"])
    parent = str(Path(name).parent)
    return f"{parent}/{rng.choice(['data.pkl', 'model.pkl', 'x.pt', 'data/0', 'byteorder', 'version'])}"


def container(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Edit a zip or tar at the member level (falls back to a byte mutation)."""
    is_zip = data[:2] == b"PK"
    members = _zip_members(data) if is_zip else _tar_members(data)
    if not members:
        return rng.choice(BYTE_OPS)(rng, data)
    index = rng.randrange(len(members))
    name, body = members[index]
    choice = rng.randrange(5)
    if choice == 0:  # mutate the member, typically the pickle
        op = rng.choice(PICKLE_OPS if body[:1] == b"\x80" or name.endswith(".pkl") else BYTE_OPS)
        body, what = op(rng, body)
        members[index] = (name, body)
        step = f"member[{name}]:{what}"
    elif choice == 1:  # a duplicate name carrying a gadget, before or after the original
        gadget, what = _gadget_pickle(rng)
        where = rng.choice([index, index + 1, len(members)])
        members.insert(where, (name, gadget))
        step = f"duplicate_member({name},{what},at={where})"
    elif choice == 2:  # rename / change case
        new = _rename(rng, name)
        members[index] = (new, body)
        step = f"rename_member({name!r}->{new!r})"
    elif choice == 3:  # renamed copy with a gadget (case variant next to the original)
        gadget, what = _gadget_pickle(rng)
        new = _rename(rng, name)
        members.insert(rng.randrange(len(members) + 1), (new, gadget))
        step = f"add_member({new!r},{what})"
    else:
        rng.shuffle(members)
        step = "shuffle_members"
    try:
        packed = zip_bytes(members, compress=rng.random() < 0.2) if is_zip else _tar(members)
    except (ValueError, OSError, UnicodeEncodeError):
        return data, f"{step}(unpackable)"
    return packed, step


def nest(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    kind = rng.choice(sorted(WRAPPERS))
    _, wrapped = WRAPPERS[kind](rng.choice(["model.pkl", "data.pt", "x", "archive/data.pkl"]), data)
    return wrapped, f"nest({kind})"


BYTE_OPS: tuple[Op, ...] = (bit_flip, truncate, insert, delete, duplicate, length_lie)
PICKLE_OPS: tuple[Op, ...] = (opcode_swap, opcode_swap, insert_gadget, insert_gadget, length_lie, truncate, bit_flip)
EXTENSIONS = (".pt", ".bin", ".pkl", ".json", ".txt", ".safetensors", ".gguf", ".npy", ".joblib", ".h5", "", ".zip")


def _ops_for(data: bytes) -> tuple[Op, ...]:
    if data[:2] == b"PK" or data[257:262] == b"ustar":
        return (container, container, container, *BYTE_OPS)
    if data[:1] == b"\x80" or data[:1] in b"(}]cV":
        return PICKLE_OPS
    return (*BYTE_OPS, *PICKLE_OPS)


def mutate(rng: random.Random, data: bytes, name: str) -> tuple[bytes, str, list[str]]:
    """One to three mutations of ``data``; returns (bytes, file name to write, step descriptions)."""
    steps: list[str] = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        op = nest if rng.random() < 0.05 else rng.choice(_ops_for(data))
        data, step = op(rng, data)
        steps.append(step)
    if rng.random() < 0.15:
        new = Path(name).stem + rng.choice(EXTENSIONS)
        steps.append(f"rename_file({new})")
        name = new
    return data, Path(name).name, steps
