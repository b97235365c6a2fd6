"""Checks on Keras model configs: Lambda layers, serialized functions, custom objects.

A Keras model config (``config.json`` in a Keras 3 ``.keras`` zip, the
``model_config`` attribute of a legacy ``.h5`` file, or a loose JSON file) is
a tree of ``{"class_name", "config", "module", "registered_name"}`` objects
that the loader turns into Python objects. What in it runs code or has side
effects, checked against Keras 3.11's ``serialization_lib`` and the
``from_config`` of its built-ins:

* ``Lambda`` layers and ``__lambda__`` / ``function_type: "lambda"`` entries
  carry marshalled Python bytecode (CVE-2024-3660); ``python_utils.func_load``
  is the only marshal user, reached only through these;
* ``TorchModuleWrapper`` holds a base64 pickle that its ``from_config``
  unpickles with ``torch.load`` (``weights_only`` off): in safe mode too on Keras
  3.11.0-3.11.2 (torch backend), on any version with ``safe_mode=False``
  (issue 15 red team). It is the only base64/pickle field a built-in
  decodes (``__bytes__`` and ``__numpy__`` are data);
* a ``module`` outside Keras makes the loader import and call arbitrary code
  (CVE-2025-1550), and some Keras built-ins load other files or code
  (``TFSMLayer``, ``get_file``, ``load_model``...: CVE-2025-8747; Keras' own
  ``LOADING_APIS``); lookup layers (``StringLookup``, ``IntegerLookup``,
  ``TextVectorization``) open a ``vocabulary`` given as a path
  (CVE-2025-12058);
* registered custom objects (``registered_name`` ``"package>Name"``) and
  unknown legacy classes need user code to be importable.

Keras resolves a class by ``module + "." + class_name`` among its exported
names (so ``module: "keras"`` with ``class_name: "layers.Lambda"`` is a
Lambda), by ``class_name`` inside any Keras module it imports, by
``registered_name`` in the custom-object registry, by a function object's
``config`` string and by a ``__typespec__``'s ``spec_name``: each of those
spellings is reduced to its last dotted part before the name checks, so
every way of naming a dangerous class is caught. ``JaxLayer``/``FlaxLayer``
functions and modules are ordinary nested objects, checked like the rest.

Reviewed Keras modules and classes are allowed; everything else is a
finding. Not handled here: reading the zip or HDF5 container (the container
and HDF5 analyzers call :func:`check_keras_config`), and the weights.
"""

from __future__ import annotations

import re

from weightguard.analysis.interface import Location
from weightguard.findings import Finding, Rule
from weightguard.formats import header_codes as codes
from weightguard.formats import keras_codes
from weightguard.formats._json import parse_json

# Modules whose objects Keras 3 (and tf.keras' .keras format) deserializes from its own code.
KERAS_MODULES = frozenset(
    {
        "keras",
        "keras.layers",
        "keras.models",
        "keras.initializers",
        "keras.regularizers",
        "keras.constraints",
        "keras.optimizers",
        "keras.optimizers.schedules",
        "keras.losses",
        "keras.metrics",
        "keras.activations",
        "keras.dtype_policies",
        "keras.mixed_precision",
    }
)
# Internal paths Keras writes for objects that are not exported publicly (Functional, ops).
KERAS_MODULE_PREFIXES = (
    "keras.src.models.",
    "keras.src.engine.",
    "keras.engine.",
    "keras.src.layers.",
    "keras.src.ops.",
)
# Keras' own value encodings (tensors, arrays, slices...); data, not code.
_DATA_CLASSES = frozenset(
    {
        "__tensor__",
        "__numpy__",
        "__bytes__",
        "__ellipsis__",
        "__slice__",
        "__typespec__",
        "__keras_tensor__",
        "__tuple__",
    }
)
# A __typespec__ names a class by spec_name and module (TensorFlow backend): TensorFlow's tensor specs only.
_TF_SPECS = frozenset({"TensorSpec", "RaggedTensorSpec", "SparseTensorSpec"})
# With the torch backend, TorchOptimizer.__new__ swaps each built-in optimizer for a subclass in
# keras/src/backend/torch/optimizers/; that subclass has no public name, so serialize_keras_object
# writes its real module (e.g. "keras.src.backend.torch.optimizers.torch_adam", registered_name
# "Adam"). Only those modules, and only the optimizers Keras defines there.
TORCH_OPTIMIZER_MODULE = "keras.src.backend.torch.optimizers."
TORCH_OPTIMIZERS = frozenset({"Adadelta", "Adagrad", "Adam", "Adamax", "AdamW", "Lion", "Nadam", "RMSprop", "SGD"})
_LAMBDA_LAYERS = frozenset({"Lambda"})
_SERIALIZED_FUNCTIONS = frozenset({"__lambda__"})
# Built-ins that load other files or run TensorFlow functions by name.
_GADGETS = frozenset(
    {
        "TFSMLayer",
        "TFOpLambda",
        "SlicingOpLambda",
        "get_file",
        "enable_unsafe_deserialization",
        # serialization_lib.LOADING_APIS (Keras >= 3.11 refuses them; older versions do not)
        "load_model",
        "load_weights",
        "load_img",
        "model_from_json",
    }
)
# keras.layers.TorchModuleWrapper (keras/src/utils/torch_utils.py): config["module"] is a base64 torch.save blob.
_PICKLED_MODULES = frozenset({"TorchModuleWrapper"})
# IndexLookup.__init__ opens a str vocabulary as a file (tf.io.gfile); TextVectorization passes it on.
_LOOKUP_LAYERS = frozenset({"StringLookup", "IntegerLookup", "IndexLookup", "TextVectorization"})
# Legacy (Keras 2 / tf.keras) configs have no "module": known built-in class names.
LEGACY_CLASSES = frozenset(
    """
    Sequential Functional Model InputLayer Input Dense Activation Dropout Flatten Reshape Permute RepeatVector
    ActivityRegularization Masking Embedding Conv1D Conv2D Conv3D Conv1DTranspose Conv2DTranspose Conv3DTranspose
    SeparableConv1D SeparableConv2D DepthwiseConv1D DepthwiseConv2D Cropping1D Cropping2D Cropping3D UpSampling1D
    UpSampling2D UpSampling3D ZeroPadding1D ZeroPadding2D ZeroPadding3D MaxPooling1D MaxPooling2D MaxPooling3D
    AveragePooling1D AveragePooling2D AveragePooling3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D
    GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D MaxPool1D MaxPool2D AvgPool1D AvgPool2D
    SimpleRNN GRU LSTM ConvLSTM1D ConvLSTM2D ConvLSTM3D SimpleRNNCell GRUCell LSTMCell StackedRNNCells RNN
    Bidirectional TimeDistributed Add Subtract Multiply Average Maximum Minimum Concatenate Dot
    BatchNormalization LayerNormalization GroupNormalization UnitNormalization LeakyReLU PReLU ELU ReLU Softmax
    ThresholdedReLU GaussianNoise GaussianDropout AlphaDropout SpatialDropout1D SpatialDropout2D SpatialDropout3D
    MultiHeadAttention Attention AdditiveAttention Rescaling Normalization Resizing CenterCrop RandomFlip
    RandomRotation RandomZoom RandomCrop RandomTranslation RandomContrast RandomBrightness StringLookup
    IntegerLookup TextVectorization CategoryEncoding Hashing Discretization Identity
    Zeros Ones Constant RandomNormal RandomUniform TruncatedNormal VarianceScaling Orthogonal Identity
    GlorotNormal GlorotUniform HeNormal HeUniform LecunNormal LecunUniform L1 L2 L1L2 OrthogonalRegularizer
    MaxNorm MinMaxNorm NonNeg UnitNorm RadialConstraint SGD RMSprop Adam AdamW Adadelta Adagrad Adamax Nadam Ftrl
    ExponentialDecay PiecewiseConstantDecay PolynomialDecay InverseTimeDecay CosineDecay CosineDecayRestarts
    Policy DTypePolicy FloatDTypePolicy TensorShape
    """.split()  # noqa: SIM905 - a word list reads better than 150 quoted strings
)


def check_keras_config(data: bytes, where: Location) -> list[Finding]:
    """Check the raw bytes of a Keras model config.

    Args:
        data: The JSON bytes (``config.json`` of a ``.keras`` zip, or an HDF5 ``model_config``);
            the caller bounds their size.
        where: Where the config sits, for the findings.

    Returns:
        One finding per Lambda layer, serialized function, foreign module or custom object,
        plus malformed or duplicated JSON; never raises.
    """
    parsed = parse_json(data, allow_constants=True)
    if not parsed.ok:
        return [_at(codes.KERAS_MALFORMED, where, f"model config: {parsed.error}")]
    findings = []
    if parsed.duplicates:
        keys = ", ".join(repr(k) for k in parsed.duplicates)
        findings.append(_at(codes.KERAS_DUPLICATE_KEY, where, f"keys appear more than once: {keys}", keys=keys))
    findings.extend(check_keras_objects(parsed.value, where))
    return findings


def check_keras_objects(value: object, where: Location) -> list[Finding]:
    """Check an already parsed Keras config tree (shared with the HDF5 analyzer)."""
    findings: list[Finding] = []
    stack: list[tuple[object, str]] = [(value, "$")]
    while stack:  # iterative: a hostile config may nest deeper than Python's recursion limit
        node, path = stack.pop()
        if isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(node))))
            continue
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("class_name"), str) and _check_object(node, path, where, findings):
            continue  # a Lambda is reported once, not again for its inner function
        if node.get("function_type") == "lambda":
            findings.append(_at(codes.KERAS_SERIALIZED_FUNCTION, where, f"{path}: function_type 'lambda'", at=path))
            continue
        stack.extend((child, f"{path}.{key}") for key, child in reversed(list(node.items())))
    return findings


def _check_object(node: dict[str, object], path: str, where: Location, out: list[Finding]) -> bool:
    """Report what is wrong with one serialized object; True when its children need no visit."""
    cls = str(node["class_name"])
    config = node.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    shown = f"{path} ({cls}{f' {name!r}' if isinstance(name, str) else ''})"
    symbols = _symbols(node)
    if symbols & _LAMBDA_LAYERS:
        out.append(_at(codes.KERAS_LAMBDA, where, f"Lambda layer at {shown}", at=path, layer=name or ""))
        return True
    if symbols & _SERIALIZED_FUNCTIONS:
        out.append(_at(codes.KERAS_SERIALIZED_FUNCTION, where, f"serialized lambda at {shown}", at=path))
        return True
    if symbols & _PICKLED_MODULES:
        message = f"TorchModuleWrapper at {shown}: loads a pickled torch module with torch.load (code execution)"
        out.append(_at(keras_codes.KERAS_PICKLED_MODULE, where, message, at=path))
        return True
    for gadget in sorted(symbols & _GADGETS):
        out.append(_at(codes.KERAS_GADGET, where, f"{gadget} at {shown}", at=path, class_name=gadget))
    if symbols & _LOOKUP_LAYERS and isinstance(config, dict) and isinstance(config.get("vocabulary"), str):
        shown_file = str(config["vocabulary"])[:200]
        out.append(
            _at(keras_codes.KERAS_FILE_REFERENCE, where, f"{shown} reads vocabulary file {shown_file!r}", at=path)
        )
    if cls == "__typespec__":
        # Resolved like a class from (spec_name, module): only TensorFlow's own tensor specs.
        spec, module = node.get("spec_name"), node.get("module")
        if spec not in _TF_SPECS or not isinstance(module, str) or not module.startswith("tensorflow."):
            out.append(_at(codes.KERAS_FOREIGN_MODULE, where, f"{path}: type spec {str(spec)[:60]!r} from module "
                           f"{str(module)[:100]!r}", at=path, module=module))  # fmt: skip
        return False
    if cls in _DATA_CLASSES:
        return False
    module, registered = node.get("module"), node.get("registered_name")
    if "module" in node and module is not None and not _keras_module(module, cls):
        out.append(
            _at(codes.KERAS_FOREIGN_MODULE, where, f"{shown} from module {str(module)[:100]!r}", at=path, module=module)
        )
    elif isinstance(registered, str) and ">" in registered:
        out.append(_at(codes.KERAS_CUSTOM_OBJECT, where, f"{shown} registered as {registered!r}", at=path))
    elif "module" not in node and "registered_name" not in node and cls not in LEGACY_CLASSES:
        out.append(_at(codes.KERAS_CUSTOM_OBJECT, where, f"{shown} is not a reviewed Keras class", at=path))
    return False


def _symbols(node: dict[str, object]) -> set[str]:
    """Every name Keras could resolve this object to, reduced to its last dotted (or ``>``) part.

    _retrieve_class_or_fn looks up ``module + "." + name`` among exported names, ``name`` in an
    imported Keras module, and ``registered_name`` in the registry; ``name`` is the class_name, a
    function object's config string, or a __typespec__'s spec_name.
    """
    names = [node.get("class_name"), node.get("registered_name"), node.get("spec_name")]
    if node.get("class_name") == "function":
        names.append(node.get("config"))
    return {re.split(r"[.>]", n)[-1] for n in names if isinstance(n, str)}


def _keras_module(module: object, cls: str) -> bool:
    if not isinstance(module, str):
        return False
    if module.startswith(TORCH_OPTIMIZER_MODULE):
        return cls in TORCH_OPTIMIZERS and module.count(".") == TORCH_OPTIMIZER_MODULE.count(".")
    return module in KERAS_MODULES or module.startswith(KERAS_MODULE_PREFIXES)


def _at(rule: Rule, where: Location, message: str, **evidence: object) -> Finding:
    text = {k: str(v) for k, v in evidence.items()}
    return Finding(rule.code, rule.severity, rule.kind, where.path, message, where.member, text)
