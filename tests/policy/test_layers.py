"""Policy layers (issue 18): several --policy files compose, in order, into one validated policy.

Later layers override scalars, extend lists (union, order kept, each item once;
``rollout.stages`` is replaced whole), merge mappings, and ``null`` resets a key
to its default. The first layer is complete or a built-in; later ones may be
partial. Every layer is read within the same bounds as a single policy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from weightguard.errors import PolicyError
from weightguard.limits import PolicyLimits
from weightguard.policy.load import load_policy

DEFAULT = Path("builtin:default")
BASE = """\
apiVersion: weightguard/v1alpha1
kind: VerificationPolicy
metadata:
  name: base
  labels: {{team: ml}}
spec:
  severity:
    fail_on: high
  formats:
    refused: [pickle]
  integrity:
    pinned:
      a.bin: "sha256:{a}"
      b.bin: "sha256:{b}"
    allow_extra: [".git", "notes.txt"]
  rollout:
    stages: [quarantine, staging, production]
    promote: {{}}
"""
OVERLAY = """\
spec:
  severity:
    fail_on: low
  formats:
    refused: [joblib, pickle]
  integrity:
    pinned:
      b.bin: "sha256:{c}"
      c.bin: "sha256:{c}"
  rollout:
    stages: [dev, prod]
metadata:
  labels: {{owner: alice}}
"""


def _hex(char: str) -> str:
    return char * 64


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "base.yaml"
    path.write_text(BASE.format(a=_hex("a"), b=_hex("b")))
    return path


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    path = tmp_path / "overlay.yaml"
    path.write_text(OVERLAY.format(c=_hex("c")))
    return path


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_later_layer_overrides_scalars_extends_lists_and_merges_mappings(base: Path, overlay: Path) -> None:
    spec = load_policy([base, overlay]).policy.spec
    assert spec.severity.fail_on.value == "low"  # scalar: the later layer wins
    assert [f.value for f in spec.formats.refused] == ["pickle", "joblib"]  # union, earlier first, once each
    assert spec.integrity.pinned == {  # mapping: merged key by key, the later pin wins
        "a.bin": "sha256:" + _hex("a"),
        "b.bin": "sha256:" + _hex("c"),
        "c.bin": "sha256:" + _hex("c"),
    }
    assert spec.integrity.allow_extra == [".git", "notes.txt"]  # untouched by the overlay


def test_rollout_stages_are_replaced_not_extended_because_their_order_is_their_meaning(
    base: Path, overlay: Path
) -> None:
    assert load_policy([base, overlay]).policy.spec.rollout.stages == ["dev", "prod"]


def test_metadata_merges_too(base: Path, overlay: Path) -> None:
    metadata = load_policy([base, overlay]).policy.metadata
    assert metadata.name == "base"
    assert metadata.labels == {"team": "ml", "owner": "alice"}


def test_null_in_a_later_layer_resets_a_key_to_its_default(base: Path, tmp_path: Path) -> None:
    reset = _write(tmp_path, "reset.yaml", "spec:\n  integrity:\n    allow_extra: null\n  severity: ~\n")
    spec = load_policy([base, reset]).policy.spec
    assert spec.integrity.allow_extra == [".git", ".gitattributes", ".github", ".gitignore"]  # the default again
    assert spec.severity.fail_on.value == "medium"
    assert spec.formats.refused  # what the layer did not name stays


def test_the_merged_policy_is_validated_as_a_whole_and_names_the_layer(tmp_path: Path) -> None:
    # The built-in default promotes into staging/canary/production; stages without them do not fit.
    overlay = _write(tmp_path, "stages.yaml", "spec:\n  rollout:\n    stages: [dev, prod]\n")
    with pytest.raises(PolicyError, match=r"stages\.yaml:2: spec\.rollout: .*promote names stages"):
        load_policy([DEFAULT, overlay])


def test_a_layer_can_only_add_to_an_allowlist(tmp_path: Path) -> None:
    # Documented choice: lists are unions, so an overlay naming fewer globals removes none.
    first = _write(tmp_path, "g1.yaml", "spec:\n  pickle:\n    allowed_globals:\n" + _globals("a.b", "c.d"))
    second = _write(tmp_path, "g2.yaml", "spec:\n  pickle:\n    allowed_globals:\n" + _globals("c.d"))
    names = [g.name for g in load_policy([DEFAULT, first, second]).policy.spec.pickle.allowed_globals]
    assert names == ["a.b", "c.d"]


def _globals(*names: str) -> str:
    return "".join(f"    - global: {n}\n      reason: needed to load\n" for n in names)


def test_the_first_layer_may_be_a_builtin(tmp_path: Path) -> None:
    overlay = _write(tmp_path, "overlay.yaml", "spec:\n  severity:\n    fail_on: low\n")
    loaded = load_policy([DEFAULT, overlay])
    assert loaded.name == "default"
    assert loaded.policy.spec.pickle.mode == "analyze"  # from the built-in
    assert loaded.policy.spec.severity.fail_on.value == "low"  # from the overlay


def test_a_partial_first_layer_is_refused_with_a_hint(overlay: Path, base: Path) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy([overlay, base])
    assert f"{overlay}:1: the first policy layer is an overlay" in err.value.message
    assert "builtin:default" in err.value.diagnostics()


def test_an_overlay_alone_is_refused_naming_it(overlay: Path) -> None:
    with pytest.raises(PolicyError, match=r"overlay\.yaml:1: an overlay \(no apiVersion/kind\) cannot stand alone"):
        load_policy(overlay)


def test_an_unknown_key_in_an_overlay_names_the_overlay_and_its_line(base: Path, tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad.yaml", "spec:\n  pickle:\n    mode: analyze\n    bogus: 1\n")
    with pytest.raises(PolicyError) as err:
        load_policy([base, bad])
    assert f"{bad}:4: spec.pickle.bogus: unknown field" in err.value.message


def test_a_bad_list_item_names_the_layer_that_added_it(base: Path, tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad.yaml", "spec:\n  formats:\n    refused:\n      - pickle\n      - nonsense\n")
    with pytest.raises(PolicyError) as err:
        load_policy([base, bad])
    assert f"{bad}:5: spec.formats.refused[1]" in err.value.message


def test_malformed_yaml_in_an_overlay_names_the_file(base: Path, tmp_path: Path) -> None:
    bad = _write(tmp_path, "broken.yaml", "spec:\n  pickle: [unclosed\n")
    with pytest.raises(PolicyError, match=r"broken\.yaml:\d+: not valid YAML"):
        load_policy([base, bad])


def test_an_overlay_that_is_not_a_mapping_is_refused(base: Path, tmp_path: Path) -> None:
    bad = _write(tmp_path, "list.yaml", "- spec\n")
    with pytest.raises(PolicyError, match=r"list\.yaml:1: a policy must be a mapping"):
        load_policy([base, bad])


def test_a_layer_naming_another_api_version_is_refused(base: Path, tmp_path: Path) -> None:
    # Even when a later complete layer would set the right one again.
    other = _write(tmp_path, "v2.yaml", "apiVersion: weightguard/v2\nspec: {}\n")
    with pytest.raises(PolicyError, match=r"v2\.yaml:1: apiVersion: expected 'weightguard/v1alpha1'"):
        load_policy([base, other, base])


def test_each_layer_is_read_within_the_policy_bounds(base: Path, tmp_path: Path) -> None:
    bomb = (
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
        + "spec: {}\n"
    )
    overlay = _write(tmp_path, "bomb.yaml", bomb)
    with pytest.raises(PolicyError, match=r"bomb\.yaml:\d+: more than 200000 YAML nodes"):
        load_policy([base, overlay])


def test_the_number_of_layers_is_bounded(base: Path) -> None:
    most = PolicyLimits().max_layers
    assert load_policy([base] * most).name == "base"
    with pytest.raises(PolicyError, match=f"more than {most} policy layers"):
        load_policy([base] * (most + 1))


def test_each_layer_is_recorded_with_its_file_sha256(base: Path, overlay: Path) -> None:
    loaded = load_policy([base, overlay])
    assert [(layer.origin, layer.sha256) for layer in loaded.layers] == [
        (str(base), hashlib.sha256(base.read_bytes()).hexdigest()),
        (str(overlay), hashlib.sha256(overlay.read_bytes()).hexdigest()),
    ]
    assert loaded.origin == f"{base} + {overlay}"


def test_a_one_file_policy_keeps_its_files_sha256(base: Path) -> None:
    loaded = load_policy([base])
    assert loaded.sha256 == hashlib.sha256(base.read_bytes()).hexdigest()
    assert [layer.origin for layer in loaded.layers] == [str(base)]


def test_the_merged_digest_covers_the_merged_policy(base: Path, overlay: Path, tmp_path: Path) -> None:
    merged = load_policy([base, overlay])
    # Same layers, same digest; another order means another policy and another digest.
    assert load_policy([base, overlay]).sha256 == merged.sha256
    assert load_policy([base, overlay, overlay]).sha256 == merged.sha256  # re-applying changes nothing
    assert load_policy([base, overlay, base]).sha256 != merged.sha256
    # A comment changes the file's sha256 (recorded per layer) but not what the policy means.
    commented = _write(tmp_path, "commented.yaml", "# why we do this\n" + overlay.read_text())
    again = load_policy([base, commented])
    assert again.sha256 == merged.sha256
    assert again.layers[1].sha256 != merged.layers[1].sha256
    assert len(merged.sha256) == 64 and merged.sha256 != merged.layers[0].sha256
    assert json.dumps(merged.policy.model_dump(mode="json"))  # the merged policy is an ordinary Policy


def test_trust_paths_are_relative_to_the_layer_that_names_them(base: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    overlay = _write(
        keys,
        "signers.yaml",
        "spec:\n  signatures:\n    trusted_signers:\n      - kind: key\n        public_key: release.pem\n"
        "  rollout:\n    attestation:\n      trusted_keys: [approver.pem]\n",
    )
    loaded = load_policy([base, overlay])
    assert loaded.base_dir == tmp_path
    signer = loaded.policy.spec.signatures.trusted_signers[0]
    assert (loaded.base_dir / signer.public_key).resolve() == (keys / "release.pem").resolve()
    trusted = loaded.policy.spec.rollout.attestation.trusted_keys
    assert (loaded.base_dir / trusted[0]).resolve() == (keys / "approver.pem").resolve()
