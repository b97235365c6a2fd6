"""Resource limits, with units in their names.

Every analysis step that could be driven to unbounded cost by a hostile file
checks one of these and raises :class:`weightguard.errors.LimitExceeded`,
which the scanner turns into an ``ERROR`` finding (the file is not approved).
The policy's ``spec.limits`` section fills this record.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits for analysing one file.

    Attributes:
        max_file_bytes: Largest file accepted at all.
        max_header_bytes: Largest format header (safetensors JSON, GGUF metadata, npy header).
        max_header_values: Most JSON values (objects, arrays, keys, strings, numbers) in one safetensors
            header. Parsed JSON costs about 100 bytes of memory per value, whatever its size in bytes,
            so this, not ``max_header_bytes``, bounds the memory of a parse (issue 15: a 99 MB header
            of 1.4 million tensors took 1.2 GB). A real checkpoint has about 11 values per tensor.
        max_pickle_bytes: Largest single pickle stream walked.
        max_pickle_opcodes: Most opcodes walked in one pickle stream.
        max_memo_entries: Most memo entries in one pickle stream.
        max_nesting_depth: Deepest nesting of containers (zip in zip, pickle in pickle).
        max_archive_members: Most members in one archive.
        max_decompressed_bytes: Most bytes decompressed for one top-level file, all members together.
        max_compression_ratio: Largest ratio of decompressed to compressed size of a member.
        max_seconds_per_file: Wall-clock budget for one top-level file.
    """

    max_file_bytes: int = 256 * GiB
    max_header_bytes: int = 100 * MiB
    max_header_values: int = 1_000_000  # about 90,000 tensors; about 100 MB to parse
    max_pickle_bytes: int = 512 * MiB
    max_pickle_opcodes: int = 20_000_000
    max_memo_entries: int = 2_000_000
    max_nesting_depth: int = 8
    max_archive_members: int = 100_000
    max_decompressed_bytes: int = 4 * GiB
    # Deflate packs zeros about 1030:1 and zero-filled tensors are common, so the per-member ratio only
    # catches what deflate cannot produce (bzip2/xz bombs); max_decompressed_bytes bounds everything.
    max_compression_ratio: float = 1100.0
    max_seconds_per_file: float = 120.0


@dataclass(frozen=True, slots=True)
class PolicyLimits:
    """Bounds on reading a policy file (the policy cannot set these: they apply before it is read).

    A policy is a few hundred lines written by a person; these bounds are far above
    that and far below what a YAML alias bomb (a few hundred bytes that expand to
    billions of nodes) or a recursive anchor would cost (issue 16).

    Attributes:
        max_bytes: Largest policy file read.
        max_nodes: Most YAML nodes after expanding every alias (each alias counts the whole node it names).
        max_depth: Deepest nesting of mappings and sequences, aliases expanded.
        max_aliases: Most alias references (``*name``) in one file.
        max_layers: Most ``--policy`` layers composed into one policy (each one read within the bounds above).
    """

    max_bytes: int = 1 * MiB
    max_nodes: int = 200_000
    max_depth: int = 64
    max_aliases: int = 1_000
    max_layers: int = 16
