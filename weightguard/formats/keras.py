"""Checks on Keras model configs: Lambda layers, serialized functions, custom objects.

A Keras model config (``config.json`` in a Keras 3 ``.keras`` zip, the
``model_config`` attribute of a legacy ``.h5`` file, or a loose JSON file) is
a tree of ``{"class_name", "config", "module", "registered_name"}`` objects
that the loader turns into Python objects. Three things in it run code:

* ``Lambda`` layers and ``__lambda__`` / ``function_type: "lambda"`` entries
  carry marshalled Python bytecode (CVE-2024-3660);
* a ``module`` outside Keras makes the loader import and call arbitrary code
  (CVE-2025-1550), and some Keras built-ins load other files or code
  (``TFSMLayer``, ``get_file``: CVE-2025-8747);
* registered custom objects (``registered_name`` ``"package>Name"``) and
  unknown legacy classes need user code to be importable.

Reviewed Keras modules and classes are allowed; everything else is a
finding. Not handled here: reading the zip or HDF5 container (the container
and HDF5 analyzers call :func:`check_keras_config`), and the weights.
"""

from __future__ import annotations

from weightguard.analysis.interface import Location
from weightguard.findings import Finding, Rule
from weightguard.formats import header_codes as codes
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
# With the torch backend, TorchOptimizer.__new__ swaps each built-in optimizer for a subclass in
# keras/src/backend/torch/optimizers/; that subclass has no public name, so serialize_keras_object
# writes its real module (e.g. "keras.src.backend.torch.optimizers.torch_adam", registered_name
# "Adam"). Only those modules, and only the optimizers Keras defines there.
TORCH_OPTIMIZER_MODULE = "keras.src.backend.torch.optimizers."
TORCH_OPTIMIZERS = frozenset({"Adadelta", "Adagrad", "Adam", "Adamax", "AdamW", "Lion", "Nadam", "RMSprop", "SGD"})
_LAMBDA_LAYERS = frozenset({"Lambda"})
_SERIALIZED_FUNCTIONS = frozenset({"__lambda__"})
# Built-ins that load other files or run TensorFlow functions by name.
_GADGETS = frozenset({"TFSMLayer", "TFOpLambda", "SlicingOpLambda", "get_file", "enable_unsafe_deserialization"})
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
    if cls in _LAMBDA_LAYERS:
        out.append(_at(codes.KERAS_LAMBDA, where, f"Lambda layer at {shown}", at=path, layer=name or ""))
        return True
    if cls in _SERIALIZED_FUNCTIONS:
        out.append(_at(codes.KERAS_SERIALIZED_FUNCTION, where, f"serialized lambda at {shown}", at=path))
        return True
    if cls in _GADGETS:
        out.append(_at(codes.KERAS_GADGET, where, f"{cls} at {shown}", at=path, class_name=cls))
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


def _keras_module(module: object, cls: str) -> bool:
    if not isinstance(module, str):
        return False
    if module.startswith(TORCH_OPTIMIZER_MODULE):
        return cls in TORCH_OPTIMIZERS and module.count(".") == TORCH_OPTIMIZER_MODULE.count(".")
    return module in KERAS_MODULES or module.startswith(KERAS_MODULE_PREFIXES)


def _at(rule: Rule, where: Location, message: str, **evidence: object) -> Finding:
    text = {k: str(v) for k, v in evidence.items()}
    return Finding(rule.code, rule.severity, rule.kind, where.path, message, where.member, text)
