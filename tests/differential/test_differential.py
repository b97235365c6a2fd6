"""Issue 15: weightguard approves a file => the real loaders reach only allowlisted globals and fire nothing.

Each test mutates seeds of one format family (``seeds.py``, ``mutate.py``) under hypothesis with
``derandomize=True`` (the same examples every run), scans every file with the public API and the
default policy, and sends only the *approved* ones to the oracle (``oracle.py``: the real
``pickle``/``torch``/``joblib``/``numpy`` loaders and the standard library's archive readers in a
sandboxed worker that resolves only allowlisted globals). Every contradiction a campaign
found is a fixture in ``fixtures.py`` and must not be approved. The oracle's own
sanity (it does see real gadgets, it is quiet on benign checkpoints) is tested first, so a passing
run cannot come from a blind oracle.
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.differential.fixtures import FIXTURES
from tests.differential.mutate import container, insert_gadget, mutate
from tests.differential.oracle import Oracle
from tests.differential.seeds import Seed, all_seeds, by_family, marker_path
from weightguard.analysis.allowlist import ALLOWLIST
from weightguard.api import scan
from weightguard.policy.load import LoadedPolicy, load_policy

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # zipfile's duplicate-name notices

_FUZZ = settings(
    max_examples=250,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    with Oracle([marker_path()]) as running:
        yield running


@pytest.fixture(scope="module")
def policy() -> LoadedPolicy:
    return load_policy(None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("differential")


def _approved(path: Path, policy: LoadedPolicy) -> bool:
    return scan([path], policy).verdict == "approved"


def _check(rnd: random.Random, seeds: tuple[Seed, ...], workdir: Path, policy: LoadedPolicy, oracle: Oracle) -> None:
    """Mutate a seed; if weightguard approves the result, the oracle must find nothing."""
    seed = rnd.choice(seeds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, name, steps = mutate(rnd, seed.data, seed.name)
    path = workdir / name
    path.write_bytes(data)
    if _approved(path, policy):
        result = oracle.check(path)
        assert not result.contradicts, f"seed {seed.name}, steps {steps}:\n{result.describe()}"


# -- the oracle itself -------------------------------------------------------------------------
def test_the_oracle_sees_the_gadget_of_every_malicious_raw_pickle_a_loader_reaches(
    oracle: Oracle, workdir: Path
) -> None:
    raw = [s for s in by_family("corpus-blocked") if s.name.startswith("corpus/malicious/gadgets/")]
    assert len(raw) >= 10
    blind = []
    for seed in raw:
        path = workdir / Path(seed.name).name
        path.write_bytes(seed.data)
        if not oracle.check(path).contradicts:
            blind.append(seed.name)
        path.unlink()
    assert not blind, f"the oracle saw nothing in {blind}"


def test_the_oracle_sees_every_zfile_corpus_case_reach_a_denied_global_in_the_real_joblib_load(
    oracle: Oracle, workdir: Path
) -> None:
    # The red team's old-joblib ZF files (issue 15): raw and as a model folder's model.joblib.
    # (In a zip or tar the member reaches joblib.load as a file object, which joblib's ZF path refuses.)
    prefix = "corpus/malicious/joblib_zfile/"
    cases = [
        s for s in by_family("corpus-blocked") if s.name.startswith(prefix) and s.name.endswith((".joblib", ".txt"))
    ]
    assert len(cases) >= 16
    blind = []
    for seed in cases:
        path = workdir / Path(seed.name).name
        path.write_bytes(seed.data)
        if not oracle.check(path, loaders=("joblib",)).contradicts:
            blind.append(seed.name)
        path.unlink()
    assert not blind, f"joblib.load reached no denied global in {blind}"


def test_the_oracle_runs_the_pickled_module_of_every_torch_module_wrapper_in_the_corpus(
    oracle: Oracle, workdir: Path
) -> None:
    # Keras is not installed here, so the oracle cannot load the .keras files themselves; it runs the step
    # that fires: TorchModuleWrapper.from_config's torch.load of the base64 ``module`` (issue 15 red team).
    wrappers = [
        s for s in by_family("corpus-blocked") if "torch_module_wrapper" in s.name and s.name.endswith(".keras")
    ]
    assert len(wrappers) >= 3
    blind = []
    for seed in wrappers:
        with zipfile.ZipFile(io.BytesIO(seed.data)) as archive:
            config = json.loads(archive.read("config.json"))
        layers = config["config"]["layers"] if "layers" in config.get("config", {}) else [config]
        blobs = [layer["config"]["module"] for layer in layers if "TorchModuleWrapper" in layer["class_name"]]
        assert blobs, seed.name
        for i, blob in enumerate(blobs):
            path = workdir / f"{Path(seed.name).stem}_{i}.pt"
            path.write_bytes(base64.b64decode(blob))
            if not oracle.check(path, ["torch"]).contradicts:
                blind.append(f"{seed.name}[{i}]")
            path.unlink()
    assert not blind, f"torch.load ran nothing in {blind}"


def test_the_oracle_sees_np_load_unpickle_a_torch_storage_that_is_an_npy(oracle: Oracle, workdir: Path) -> None:
    # The red team's torch zip whose tensor bytes are an object .npy (issue 15): torch reads floats,
    # np.load(allow_pickle=True) takes the zip for an npz and unpickles the storage member.
    cases = [s for s in by_family("corpus-blocked") if "npy_in_a" in s.name and s.name.endswith(".pt")]
    assert len(cases) == 2
    for seed in cases:
        path = workdir / Path(seed.name).name
        path.write_bytes(seed.data)
        assert oracle.check(path, loaders=("numpy",)).contradicts, seed.name
        assert not oracle.check(path, loaders=("torch",)).contradicts, seed.name  # weights_only or not: floats
        path.unlink()


def test_the_oracle_finds_nothing_in_benign_checkpoints_of_every_family(oracle: Oracle, workdir: Path) -> None:
    noisy = []
    for seed in all_seeds():
        if seed.family == "corpus-blocked":
            continue
        path = workdir / Path(seed.name).name
        path.write_bytes(seed.data)
        result = oracle.check(path)
        if result.contradicts:
            noisy.append(result.describe())
    assert not noisy, "\n".join(noisy)


def test_the_oracle_survives_a_loader_hang_and_continues_with_the_next_file(tmp_path: Path, oracle: Oracle) -> None:
    # Four million APPENDs of a protocol-0 list: harmless, but far longer than the time limit set here.
    hang = tmp_path / "hang.pkl"
    hang.write_bytes(b"(lp0\n" + b"I1\na" * 4_000_000 + b".")
    restarts, oracle.timeout = oracle.stats.restarts, 0.2
    try:
        first = oracle.check(hang, loaders=("pickle",))
    finally:
        oracle.timeout = 10.0
    second = oracle.check(Path(__file__))
    assert first.incomplete == ("pickle",)
    assert [run.loader for run in second.runs] == ["pickle", "torch", "joblib", "numpy", "archive"]
    assert second.runs[0].outcome.startswith("file: raised")
    assert oracle.stats.restarts >= restarts + 1


def test_the_oracle_worker_has_a_memory_limit_so_a_huge_allocation_is_an_outcome(tmp_path: Path, oracle) -> None:
    big = tmp_path / "big.pkl"
    big.write_bytes(b"c__builtin__\nbytearray\n(I8000000000\ntR.")  # an allowlisted 8 GB bytearray
    result = oracle.check(big, loaders=("pickle", "joblib"))
    assert [run.outcome for run in result.runs][1] == "raised MemoryError: "
    assert not result.incomplete


# -- approved => no contradiction, per family ----------------------------------------------------
@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_approved_mutations_of_raw_pickles_reach_only_allowlisted_globals(rnd, workdir, policy, oracle) -> None:
    _check(rnd, by_family("pickle"), workdir, policy, oracle)


@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_approved_mutations_of_torch_checkpoints_reach_only_allowlisted_globals(rnd, workdir, policy, oracle) -> None:
    _check(rnd, by_family("torch"), workdir, policy, oracle)


@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_approved_mutations_of_joblib_files_reach_only_allowlisted_globals(rnd, workdir, policy, oracle) -> None:
    _check(rnd, by_family("joblib"), workdir, policy, oracle)


@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_approved_mutations_of_numpy_files_reach_only_allowlisted_globals(rnd, workdir, policy, oracle) -> None:
    _check(rnd, by_family("numpy"), workdir, policy, oracle)


@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_approved_mutations_of_archives_reach_only_allowlisted_globals(rnd, workdir, policy, oracle) -> None:
    _check(rnd, by_family("archive"), workdir, policy, oracle)


@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_approved_mutations_of_safetensors_gguf_onnx_and_hdf5_reach_nothing(rnd, workdir, policy, oracle) -> None:
    _check(rnd, by_family("other"), workdir, policy, oracle)


@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_approved_mutations_of_text_files_reach_nothing(rnd, workdir, policy, oracle) -> None:
    _check(rnd, by_family("text"), workdir, policy, oracle)


@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_approved_mutations_of_the_threat_corpus_reach_only_allowlisted_globals(rnd, workdir, policy, oracle) -> None:
    _check(rnd, by_family("corpus-blocked"), workdir, policy, oracle)


# -- targeted generators for known root causes ----------------------------------------------------
def _judge_bytes(name: str, data: bytes, step: str, workdir: Path, policy: LoadedPolicy, oracle: Oracle) -> None:
    path = workdir / Path(name).name
    path.write_bytes(data)
    if _approved(path, policy):
        result = oracle.check(path)
        assert not result.contradicts, f"{name} {step}:\n{result.describe()}"


_GADGET_SEEDS = ("pickle", "joblib", "torch")


@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_gadgets_inserted_at_opcode_boundaries_are_never_approved(rnd, workdir, policy, oracle) -> None:
    seed = rnd.choice([s for family in _GADGET_SEEDS for s in by_family(family)])
    data, step = insert_gadget(rnd, seed.data)
    _judge_bytes(seed.name, data, step, workdir, policy, oracle)


@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_gadget_streams_cut_short_are_never_approved(rnd, workdir, policy, oracle) -> None:
    seed = rnd.choice([*by_family("text"), *by_family("pickle")])
    data, step = insert_gadget(rnd, seed.data)
    cut = rnd.randrange(len(data) + 1)
    _judge_bytes(seed.name, data[:cut], f"{step}, truncate({cut})", workdir, policy, oracle)


@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_allowlisted_globals_whose_argument_crosses_a_frame_end_are_never_approved(
    rnd, workdir, policy, oracle
) -> None:
    module, name = rnd.choice(sorted(ALLOWLIST))
    body = b"c" + module.encode() + b"\n" + name.encode() + b"\n."
    inside = rnd.randrange(1, len(body))
    data = b"\x80\x04\x95" + struct.pack("<Q", inside) + body
    _judge_bytes("frame.pkl", data, f"frame ends {inside} bytes into GLOBAL {module}.{name}", workdir, policy, oracle)


@_FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_member_level_edits_of_torch_zips_and_tars_are_never_approved_when_they_reach_a_gadget(
    rnd, workdir, policy, oracle
) -> None:
    seeds = [s for s in all_seeds() if s.data[:2] == b"PK" or s.name.endswith(".tar")]
    seed = rnd.choice(seeds)
    data, step = container(rnd, seed.data)
    path = workdir / Path(seed.name).name
    path.write_bytes(data)
    if _approved(path, policy):
        result = oracle.check(path)
        assert not result.contradicts, f"{seed.name} {step}:\n{result.describe()}"


# -- minimized regressions -------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_each_found_fixture_really_reaches_a_denied_global_in_a_real_loader(fixture, tmp_path, oracle) -> None:
    path = tmp_path / fixture.name
    path.write_bytes(fixture.build())
    assert oracle.check(path).contradicts


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_each_found_fixture_is_not_approved(fixture, tmp_path, policy) -> None:
    path = tmp_path / fixture.name
    path.write_bytes(fixture.build())
    assert not _approved(path, policy)


def test_the_committed_found_files_are_what_the_generators_write() -> None:
    folder = Path(__file__).with_name("found")
    for fixture in FIXTURES:
        assert (folder / fixture.name).read_bytes() == fixture.build(), fixture.name
