"""The pickle allowlist: exact ``(module, qualname)`` globals a weights file may name, each with why it is safe.

The decision is made here and only here: a global is allowed when its exact
``(module, qualname)`` (after ``_compat_pickle`` remapping) is in
:data:`ALLOWLIST` or in the policy's ``extra_allowed``. There are no prefixes,
wildcards or attribute walks: a qualname containing ``.`` is allowed only if
it is listed verbatim (none is). The list starts from what
``torch.load(weights_only=True)`` accepts (``torch._weights_only_unpickler.
_get_allowed_globals``), written by hand because the core must not import
torch, plus a reviewed numpy set, joblib's array wrapper and inert standard
library data types found in real checkpoints' metadata. A class is safe here
when constructing it and setting its state runs no code the stream chooses;
a function when it only rebuilds data from its arguments, and every callable
it can reach through those arguments must itself be a named, allowlisted global.

:func:`classify` is NOT a denylist: it only raises the severity of an already
denied global to CRITICAL and explains what the global can do (code execution,
nested deserialization, string-to-callable resolution, scanner tampering).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Danger(StrEnum):
    """Why a denied global is known to be dangerous."""

    CODE_EXECUTION = "code-execution"
    NESTED_DESERIALIZATION = "nested-deserialization"
    RESOLVER = "string-to-callable resolver"
    SYSTEM_ACCESS = "file, process or network access"
    SCANNER_TAMPERING = "scanner tampering"
    INTROSPECTION = "attribute-walk introspection"


@dataclass(frozen=True, slots=True)
class Classification:
    """What a known-dangerous global can do."""

    danger: Danger
    reason: str


def _entries(module: str, names: Iterable[str], reason: str) -> dict[tuple[str, str], str]:
    return {(module, name): reason for name in names}


_SCALARS = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
_STORAGES = (*_SCALARS, "ComplexFloat", "ComplexDouble", "QInt8", "QUInt8", "QInt32", "QUInt4x2", "QUInt2x4")
_TENSOR_TYPES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte")
_DTYPES = (
    "float16", "float32", "float64", "bfloat16", "half", "float", "double", "complex32", "complex64", "complex128",
    "cfloat", "cdouble", "chalf", "int8", "int16", "int32", "int64", "short", "int", "long", "uint8", "uint16",
    "uint32", "uint64", "bool", "qint8", "quint8", "qint32", "quint4x2", "quint2x4", "bits1x8", "bits2x4", "bits4x2",
    "bits8", "bits16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
    "float4_e2m1fn_x2", "bcomplex32", *(f"uint{i}" for i in range(1, 8)), *(f"int{i}" for i in range(1, 8)),
)  # fmt: skip
_REBUILD = (
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
    "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_wrapper_subclass",
    "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor", "_rebuild_meta_tensor_no_storage",
    "_rebuild_nested_tensor",
)  # fmt: skip
_NP_DTYPE_CLASSES = (
    "BoolDType", "Int8DType", "UInt8DType", "Int16DType", "UInt16DType", "Int32DType", "UInt32DType", "Int64DType",
    "UInt64DType", "LongLongDType", "ULongLongDType", "ByteDType", "UByteDType", "ShortDType", "UShortDType",
    "IntDType", "UIntDType", "LongDType", "ULongDType", "Float16DType", "Float32DType", "Float64DType",
    "LongDoubleDType", "Complex64DType", "Complex128DType", "CLongDoubleDType", "BytesDType", "StrDType", "VoidDType",
    "DateTime64DType", "TimeDelta64DType", "StringDType", "ObjectDType",
)  # fmt: skip
_NP_SCALAR_TYPES = (
    "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
    "float64", "longdouble", "complex64", "complex128", "clongdouble", "str_", "bytes_", "void", "datetime64",
    "timedelta64", "intc", "uintc", "longlong", "ulonglong", "half", "single", "double",
)  # fmt: skip

_REBUILD_WHY = (
    "torch tensor reconstructor (allowed by torch weights_only): rebuilds a tensor from a storage and sizes; "
    "any callable it receives is itself a pickle global that must be allowlisted"
)
_TYPE_WHY = (
    "torch type object used as a marker (storage/tensor type, dtype); referencing or calling it builds data only"
)

ALLOWLIST: Mapping[tuple[str, str], str] = {
    **_entries("torch._utils", _REBUILD, _REBUILD_WHY),
    ("torch._tensor", "_rebuild_from_type_v2"): "tensor subclass rebuild (weights_only): calls an allowlisted "
    "rebuild function, then as_subclass to an allowlisted type and sets plain state",
    ("torch.serialization", "_get_layout"): "maps a layout name string to a torch.layout (weights_only)",
    ("torch.nn.parameter", "Parameter"): "wraps a tensor as a Parameter (weights_only)",
    ("torch", "Tensor"): "the tensor class (weights_only); BUILD on tensors is Tensor.__setstate__",
    ("torch", "Size"): "tuple subclass of dimensions (weights_only)",
    ("torch", "device"): "device descriptor parsed from a string (weights_only); touches no device",
    ("torch.storage", "UntypedStorage"): _TYPE_WHY,
    ("torch.storage", "TypedStorage"): _TYPE_WHY,
    **_entries("torch", (f"{s}Storage" for s in _STORAGES), _TYPE_WHY),
    **_entries("torch.cuda", (f"{s}Storage" for s in _STORAGES[:12]), _TYPE_WHY),
    **_entries("torch", (f"{s}Tensor" for s in (*_TENSOR_TYPES, "Bool")), _TYPE_WHY),
    **_entries("torch.cuda", (f"{s}Tensor" for s in (*_TENSOR_TYPES, "Bool")), _TYPE_WHY),
    **_entries("torch.sparse", (f"{s}Tensor" for s in _TENSOR_TYPES), _TYPE_WHY),
    **_entries("torch.cuda.sparse", (f"{s}Tensor" for s in _TENSOR_TYPES), _TYPE_WHY),
    **_entries("torch", _DTYPES, "torch dtype singleton (weights_only lists every dtype, incl. float8/bits)"),
    **_entries(
        "torch",
        (
            "per_tensor_affine",
            "per_tensor_symmetric",
            "per_channel_affine",
            "per_channel_symmetric",
            "per_channel_affine_float_qparams",
        ),
        "torch quantization scheme singleton (weights_only)",
    ),  # fmt: skip
    **_entries(
        "torch",
        (
            "strided",
            "sparse_coo",
            "sparse_csr",
            "sparse_csc",
            "sparse_bsr",
            "sparse_bsc",
            "_mkldnn",
            "jagged",
            "contiguous_format",
            "channels_last",
            "channels_last_3d",
            "preserve_format",
        ),
        "torch layout / memory-format singleton: an inert enum-like value",
    ),  # fmt: skip
    ("collections", "OrderedDict"): "plain mapping (weights_only); state dicts are OrderedDicts",
    ("collections", "Counter"): "plain mapping of counts (weights_only)",
    ("collections", "defaultdict"): "mapping (not in torch's weights_only defaults; torch users add it with "
    "add_safe_globals): its default factory must be a named global, itself allowlisted, or None; the walker "
    "flags any other factory and any BUILD that could set one",
    ("collections", "deque"): "plain sequence container",
    ("builtins", "set"): "plain container (weights_only)",
    ("builtins", "frozenset"): "plain container, used as a value or defaultdict factory",
    ("builtins", "bytearray"): "bytes buffer (weights_only)",
    ("builtins", "complex"): "number (weights_only)",
    ("builtins", "slice"): "inert slice value",
    ("builtins", "range"): "lazy inert range value",
    # Built-in data types beyond torch's weights_only defaults (which allow only set, bytearray and
    # complex): used as values (dtype=int in configs) and as defaultdict factories (defaultdict(list)).
    # Calling one builds plain data from arguments that are themselves allowlisted data.
    ("builtins", "list"): "list type, used as a value or defaultdict factory; calling it copies an iterable",
    ("builtins", "dict"): "dict type, used as a value or defaultdict factory; calling it copies a mapping",
    ("builtins", "tuple"): "tuple type, used as a value or defaultdict factory; calling it copies an iterable",
    ("builtins", "bytes"): "bytes type, used as a value or defaultdict factory; builds bytes like bytearray",
    ("builtins", "int"): "number type, used as a value (e.g. dtype=int in configs)",
    ("builtins", "float"): "number type, used as a value",
    ("builtins", "bool"): "boolean type, used as a value",
    ("builtins", "str"): "string type, used as a value",
    ("builtins", "object"): "base class argument of copyreg._reconstructor in protocol 0/1 pickles",
    ("_codecs", "encode"): "str to bytes with a codec (weights_only; how protocol-2 pickles write bytes)",
    ("copyreg", "_reconstructor"): "protocol 0/1 object rebuild: base.__new__(cls) with cls and base themselves "
    "allowlisted globals",
    ("numpy.core.multiarray", "_reconstruct"): "numpy 1.x ndarray rebuild: ndarray.__new__ of an allowlisted subtype",
    ("numpy._core.multiarray", "_reconstruct"): "numpy 2.x ndarray rebuild (same as numpy.core)",
    ("numpy.core.multiarray", "scalar"): "numpy scalar from dtype and raw bytes",
    ("numpy._core.multiarray", "scalar"): "numpy scalar from dtype and raw bytes",
    ("numpy.core.numeric", "_frombuffer"): "ndarray from a bytes buffer (protocol 5 arrays)",
    ("numpy._core.numeric", "_frombuffer"): "ndarray from a bytes buffer (protocol 5 arrays)",
    ("numpy", "ndarray"): "the array class (subtype argument of _reconstruct)",
    ("numpy", "dtype"): "dtype from a type string; BUILD sets byte order and field layout",
    **_entries("numpy.dtypes", _NP_DTYPE_CLASSES, "numpy dtype class object: inert type value"),
    **_entries("numpy", _NP_SCALAR_TYPES, "numpy scalar type object, used as a value (e.g. dtype=np.float32)"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"): "joblib array placeholder: plain attributes (shape, dtype, order); "
    "joblib reads the raw array bytes that follow it, which weightguard skips without decoding",
    ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper"): "the same wrapper from joblib vendored in "
    "scikit-learn < 0.23",
    ("datetime", "datetime"): "date/time value",
    ("datetime", "date"): "date value",
    ("datetime", "time"): "time value",
    ("datetime", "timedelta"): "duration value",
    ("datetime", "timezone"): "fixed-offset timezone value",
    ("decimal", "Decimal"): "exact decimal number parsed from a string",
    ("fractions", "Fraction"): "rational number",
    ("uuid", "UUID"): "UUID value (state is an int)",
    ("uuid", "SafeUUID"): "enum of UUID safety flags",
    ("argparse", "Namespace"): "attribute bag of parsed arguments, common in old checkpoints; only sets attributes",
    ("types", "SimpleNamespace"): "attribute bag; only sets attributes",
    ("pathlib", "PosixPath"): "path value; constructing it touches no file",
    ("pathlib", "WindowsPath"): "path value; constructing it touches no file",
    ("pathlib", "PurePosixPath"): "pure path value",
    ("pathlib", "PureWindowsPath"): "pure path value",
    # Python 3.13 moved the concrete classes to pathlib._local, so its pickles name that module (issue 15).
    # Calling one joins string parts into a path object (a PathLike argument's __fspath__ could only be
    # reached through another allowlisted global, none of which defines one); no file is touched.
    ("pathlib._local", "PosixPath"): "path value (Python 3.13 pickles); constructing it touches no file",
    ("pathlib._local", "WindowsPath"): "path value (Python 3.13 pickles); on POSIX constructing it fails, "
    "running nothing",
    ("pathlib._local", "PurePosixPath"): "pure path value (Python 3.13 pickles)",
    ("pathlib._local", "PureWindowsPath"): "pure path value (Python 3.13 pickles)",
    # Nested jagged tensors (torch.nested, layout=torch.jagged): torch.nested and torch._dynamo register these
    # three with add_safe_globals when imported, so torch.load(weights_only=True) accepts them (issue 15).
    ("torch.nested._internal.nested_tensor", "NestedTensor"): "jagged tensor subclass (weights_only once torch."
    "nested is imported): the target type of _rebuild_from_type_v2's as_subclass; its state is plain attributes",
    ("torch.nested._internal.nested_tensor", "_rebuild_njt"): "NestedTensor(**kwargs) from values/offsets/lengths "
    "tensors, ints and a metadata dict (weights_only once torch.nested is imported); builds data only",
    ("torch._dynamo.decorators", "_DimRange"): "frozen dataclass (dim, min, max) of ints that dynamic-shape marks "
    "keep on a tensor (weights_only once torch._dynamo is imported); constructing it sets three fields",
}

# torch weights_only globals deliberately left out, with the reason (checked by a test against torch).
DELIBERATELY_EXCLUDED: Mapping[str, str] = {}

# Only classify; the decision is the allowlist. Module entries cover submodules too.
_DANGEROUS_MODULES: Mapping[str, Classification] = {
    **{
        m: Classification(Danger.CODE_EXECUTION, "runs shell commands or arbitrary Python")
        for m in (
            "os",
            "posix",
            "nt",
            "subprocess",
            "pty",
            "runpy",
            "code",
            "codeop",
            "timeit",
            "profile",
            "cProfile",
            "trace",
            "doctest",
            "pdb",
            "bdb",
            "idlelib",
            "lib2to3",
            "_osx_support",
            "_aix_support",
            "_interpreters",
            "_xxsubinterpreters",
            "multiprocessing",
            "concurrent",
            "asyncio",
            "ctypes",
            "_ctypes",
            "cffi",
            "numpy.testing",
            "numpy.f2py",
            "numpy.distutils",
            "distutils",
            "setuptools",
            "torch._inductor",
            "torch.utils.collect_env",
            "torch._dynamo",
            "torch.jit",
            "torch.utils.cpp_extension",
            "torch._C",
            "IPython",
            "commands",
            "platform",
            "ensurepip",
            "pip",
            "venv",
            "tkinter",
            "turtle",
            "threading",
            "_thread",
            "signal",
            "sys",
        )
    },  # fmt: skip
    **{
        m: Classification(Danger.NESTED_DESERIALIZATION, "deserializes attacker bytes, which can run code")
        for m in (
            "pickle",
            "_pickle",
            "cPickle",
            "marshal",
            "shelve",
            "dill",
            "cloudpickle",
            "yaml",
            "pickletools",
            "copyreg",
            "jsonpickle",
            "torch.serialization",
            "torch.package",
        )
    },  # fmt: skip
    **{
        m: Classification(Danger.RESOLVER, "turns strings into callables or modules")
        for m in (
            "importlib",
            "pkgutil",
            "pydoc",
            "operator",
            "_operator",
            "functools",
            "inspect",
            "types",
            "zipimport",
            "imp",
            "builtins.getattr",
            "torch.hub",
        )
    },  # fmt: skip
    **{
        m: Classification(Danger.SYSTEM_ACCESS, "reads/writes files, opens connections or launches programs")
        for m in (
            "shutil",
            "socket",
            "_socket",
            "webbrowser",
            "urllib",
            "http",
            "ftplib",
            "smtplib",
            "imaplib",
            "poplib",
            "telnetlib",
            "requests",
            "httpx",
            "io",
            "_io",
            "tempfile",
            "glob",
            "fileinput",
            "zipfile",
            "tarfile",
            "sqlite3",
            "logging",
            "uuid._get_command_stdout",
            "pandas.io",
            "smtpd",
        )
    },  # fmt: skip
    **{
        m: Classification(Danger.SCANNER_TAMPERING, "imports a scanner, which a pickle must never need")
        for m in ("weightguard", "fickling", "picklescan", "modelscan", "modelaudit")
    },
}
_DANGEROUS_NAMES: Mapping[tuple[str, str], Classification] = {
    **{
        ("builtins", n): Classification(Danger.CODE_EXECUTION, "evaluates code or imports modules")
        for n in ("eval", "exec", "compile", "__import__", "breakpoint", "help", "input", "exit", "quit")
    },
    **{
        ("builtins", n): Classification(Danger.RESOLVER, "reads or writes arbitrary attributes and namespaces")
        for n in ("getattr", "setattr", "delattr", "globals", "locals", "vars", "type", "super", "classmethod")
    },
    ("builtins", "open"): Classification(Danger.SYSTEM_ACCESS, "opens files"),
    ("builtins", "print"): Classification(Danger.INTROSPECTION, "a foothold for attribute walks (modelscan #338)"),
    **{
        (m, "load"): Classification(Danger.NESTED_DESERIALIZATION, "loads a nested file with pickle")
        for m in ("torch", "numpy", "joblib", "joblib.numpy_pickle", "numpy.lib.npyio", "numpy.lib._npyio_impl")
    },
    ("torch.storage", "_load_from_bytes"): Classification(Danger.NESTED_DESERIALIZATION, "torch.load on bytes"),
    ("joblib.numpy_pickle_compat", "NDArrayWrapper"): Classification(
        Danger.NESTED_DESERIALIZATION, "joblib < 0.10 wrapper: numpy-loads, pickles allowed, a file path it names"
    ),
    ("joblib.numpy_pickle_compat", "ZNDArrayWrapper"): Classification(
        Danger.NESTED_DESERIALIZATION, "joblib < 0.10 wrapper: reads a separate file it names"
    ),
}
_DUNDER_WALK = ("__class__", "__base__", "__bases__", "__mro__", "__subclasses__", "__globals__", "__builtins__",
                "__dict__", "__getattribute__", "__init__", "__code__", "__closure__", "__self__", "__func__",
                "__module__", "__loader__", "__spec__", "__reduce__", "__reduce_ex__", "__call__")  # fmt: skip


def is_allowed(module: str, qualname: str, extra: frozenset[str] = frozenset()) -> bool:
    """Return True when ``module.qualname`` may be named by a pickle.

    Args:
        module: Module after ``_compat_pickle`` remapping.
        qualname: Attribute path inside the module.
        extra: The policy's extra ``module.qualname`` entries; each is split at its last dot,
            so an extra never allows an attribute walk either.
    """
    if (module, qualname) in ALLOWLIST:
        return True
    return "." not in qualname and f"{module}.{qualname}" in extra


def classify(module: str, qualname: str) -> Classification | None:
    """Return why a (denied) global is known to be dangerous, or None when nothing is known."""
    if "." in qualname and any(part in _DUNDER_WALK for part in qualname.split(".")):
        return Classification(Danger.INTROSPECTION, "walks dunder attributes to reach arbitrary objects")
    head = qualname.split(".", 1)[0]
    for key in ((module, qualname), (module, head)):
        if key in _DANGEROUS_NAMES:
            return _DANGEROUS_NAMES[key]
    parts = f"{module}.{head}".split(".")
    for cut in range(len(parts), 0, -1):
        found = _DANGEROUS_MODULES.get(".".join(parts[:cut]))
        if found is not None:
            return found
    return None
