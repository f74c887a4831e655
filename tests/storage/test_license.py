"""Licence files: signed with Ed25519, verified without the database, any edit detected."""

from __future__ import annotations

import json
import os
from datetime import date

import pytest

from engine.locker import license_files as license
from engine import locker
from engine.services.coverage import Requirement
from engine.problem import CompanionError


@pytest.fixture(scope="module")
def key():
    return license.generate_private_key()


@pytest.fixture
def activation(store, make_user, fund, tag):
    ann = make_user("ann")
    fund(ann, f"EPO-{tag}", 1)
    return locker.activate(store, ann, {"product": "epo", "tier": "advanced", "note": "café"}, "rules-1",
                           [Requirement(f"EPO-{tag}", 1, "EPO")], {}, on=date(2025, 6, 1))


def code_of(data, public) -> str:
    with pytest.raises(CompanionError) as caught:
        license.verify_license(data, public)
    return caught.value.problems[0].code


def test_export_and_verify(activation, key):
    data = license.export_license(activation, key, {"email": activation.user, "company": "Acme"})
    document = license.verify_license(data, key.public_key())
    assert document["activation_id"] == activation.id
    assert document["configuration"]["note"] == "café"
    assert document["term_start"] == "2025-06-01" and document["issued_to"]["company"] == "Acme"


def test_every_single_byte_edit_is_detected(activation, key):
    data = license.export_license(activation, key)
    public = key.public_key()
    for position in range(len(data)):
        for replacement in (b" ", b"0", b"x"):
            if data[position:position + 1] == replacement:
                continue
            edited = data[:position] + replacement + data[position + 1:]
            assert code_of(edited, public) in ("bad-signature", "malformed-licence"), position


def test_edited_value_reformatting_and_other_key_are_refused(activation, key):
    data = license.export_license(activation, key)
    envelope = json.loads(data)
    envelope["licence"]["configuration"]["tier"] = "advanced-plus"
    assert code_of(license.canonical_json(envelope), key.public_key()) == "bad-signature"
    pretty = json.dumps(json.loads(data), indent=2).encode()
    assert code_of(pretty, key.public_key()) == "bad-signature"
    assert code_of(data + b" ", key.public_key()) == "bad-signature"
    assert code_of(data, license.generate_private_key().public_key()) == "bad-signature"
    assert code_of(b"not json", key.public_key()) == "malformed-licence"
    assert code_of(b'{"licence": {}}', key.public_key()) == "malformed-licence"


def test_keys_round_trip_through_pem(key, tmp_path):
    path = tmp_path / "k.pem"
    path.write_bytes(license.private_key_pem(key))
    assert license.key_id(license.load_private_key(path)) == license.key_id(key)
    assert license.key_id(license.load_public_key(license.public_key_pem(key))) == license.key_id(key)
    with pytest.raises(CompanionError) as caught:
        license.load_public_key(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    assert caught.value.problems[0].code == "bad-key"


def test_signing_key_is_generated_once_where_configured(tmp_path, monkeypatch):
    monkeypatch.setenv(license.SIGNING_KEY_VARIABLE, str(tmp_path / "keys" / "vendor.pem"))
    first = license.signing_key()
    assert (tmp_path / "keys" / "vendor.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys" / "vendor.pub.pem").exists()
    assert license.key_id(license.signing_key()) == license.key_id(first)
    monkeypatch.delenv(license.SIGNING_KEY_VARIABLE)
    monkeypatch.chdir(tmp_path)
    assert license.signing_key_path() == tmp_path / "instance" / "signing-key.pem"
    license.signing_key()
    assert os.path.exists(tmp_path / "instance" / "signing-key.pub.pem")


def test_regression_unused_bits_of_the_base64_signature_are_an_edit(activation, key):
    data = license.export_license(activation, key)
    envelope = json.loads(data)
    last = envelope["signature"].rstrip("=")[-1]
    twin = chr(ord(last) + 1)  # same high bits, different unused low bits: decodes to the same signature
    envelope["signature"] = envelope["signature"].replace(last + "==", twin + "==")
    assert code_of(license.canonical_json(envelope) + b"\n", key.public_key()) == "bad-signature"


ACTIVATION_JSON = {"id": "ACT-TEST-0001", "kind": "activation", "configuration": {"product": "epo"},
                   "rules_version": "rules-1", "badges": [], "lines": [{"reference": "EPO-X", "units": 1}],
                   "activated_on": "2025-06-01", "term_start": "2025-06-01", "created_at": "2025-06-01T00:00:00"}


def verify_cli(tmp_path, data: bytes, key) -> tuple[int, str]:
    """Run `companion license verify` on DATA written to a file; return (exit code, stderr)."""
    from click.testing import CliRunner

    from engine.cli import cli

    (tmp_path / "licence.json").write_bytes(data)
    (tmp_path / "vendor.pub.pem").write_bytes(license.public_key_pem(key))
    result = CliRunner().invoke(cli, ["license", "verify", str(tmp_path / "licence.json"),
                                      "--public-key", str(tmp_path / "vendor.pub.pem")])
    return result.exit_code, result.stderr


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
@pytest.mark.parametrize("where", ["envelope", "licence"])
def test_regression_nan_and_infinity_are_a_malformed_license(tmp_path, key, constant, where):
    """Regression: json.loads read NaN, then signing it again crashed with error[internal] (ValueError)."""
    data = license.export_license(ACTIVATION_JSON, key)
    assert verify_cli(tmp_path, data, key)[0] == 0
    extra = b'"x":' + constant + b","
    edited = b"{" + extra + data[1:] if where == "envelope" else data.replace(b'"term_start"', extra + b'"term_start"')
    code, err = verify_cli(tmp_path, edited, key)
    assert code == verify_cli(tmp_path, b"not json", key)[0] != 0
    assert err.startswith("error[malformed-licence]: "), err
    assert f"{constant.decode().lstrip('-')} is not a JSON number" in err and "internal" not in err


@pytest.mark.parametrize("depth", [150, 990, 100_000])
def test_regression_deeply_nested_json_is_a_malformed_license(tmp_path, key, depth):
    """Regression: `[` x 100000 then `]` x 100000 crashed with error[internal] (RecursionError)."""
    code, err = verify_cli(tmp_path, b"[" * depth + b"]" * depth, key)
    assert code == verify_cli(tmp_path, b"not json", key)[0] != 0
    assert err.startswith("error[malformed-licence]: the licence file is nested more than 100 levels"), err
    data = license.export_license(ACTIVATION_JSON, key)
    nested = data.replace(b'"term_start"', b'"x":' + b"[" * depth + b"]" * depth + b',"term_start"')
    code, err = verify_cli(tmp_path, nested, key)
    assert code != 0 and err.startswith("error[malformed-licence]: "), err
