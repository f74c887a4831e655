"""Licence files: signed with Ed25519, verified without the database, any edit detected."""

from __future__ import annotations

import json
import os
from datetime import date

import pytest

from engine import licence, locker
from engine.locker import Requirement
from engine.problem import CompanionError


@pytest.fixture(scope="module")
def key():
    return licence.generate_private_key()


@pytest.fixture
def activation(store, make_user, fund, tag):
    ann = make_user("ann")
    fund(ann, f"EPO-{tag}", 1)
    return locker.activate(store, ann, {"product": "epo", "tier": "advanced", "note": "café"}, "rules-1",
                           [Requirement(f"EPO-{tag}", 1, "EPO")], {}, on=date(2025, 6, 1))


def code_of(data, public) -> str:
    with pytest.raises(CompanionError) as caught:
        licence.verify_licence(data, public)
    return caught.value.problems[0].code


def test_export_and_verify(activation, key):
    data = licence.export_licence(activation, key, {"email": activation.user, "company": "Acme"})
    document = licence.verify_licence(data, key.public_key())
    assert document["activation_id"] == activation.id
    assert document["configuration"]["note"] == "café"
    assert document["term_start"] == "2025-06-01" and document["issued_to"]["company"] == "Acme"


def test_every_single_byte_edit_is_detected(activation, key):
    data = licence.export_licence(activation, key)
    public = key.public_key()
    for position in range(len(data)):
        for replacement in (b" ", b"0", b"x"):
            if data[position:position + 1] == replacement:
                continue
            edited = data[:position] + replacement + data[position + 1:]
            assert code_of(edited, public) in ("bad-signature", "malformed-licence"), position


def test_edited_value_reformatting_and_other_key_are_refused(activation, key):
    data = licence.export_licence(activation, key)
    envelope = json.loads(data)
    envelope["licence"]["configuration"]["tier"] = "advanced-plus"
    assert code_of(licence.canonical_json(envelope), key.public_key()) == "bad-signature"
    pretty = json.dumps(json.loads(data), indent=2).encode()
    assert code_of(pretty, key.public_key()) == "bad-signature"
    assert code_of(data + b" ", key.public_key()) == "bad-signature"
    assert code_of(data, licence.generate_private_key().public_key()) == "bad-signature"
    assert code_of(b"not json", key.public_key()) == "malformed-licence"
    assert code_of(b'{"licence": {}}', key.public_key()) == "malformed-licence"


def test_keys_round_trip_through_pem(key, tmp_path):
    path = tmp_path / "k.pem"
    path.write_bytes(licence.private_key_pem(key))
    assert licence.key_id(licence.load_private_key(path)) == licence.key_id(key)
    assert licence.key_id(licence.load_public_key(licence.public_key_pem(key))) == licence.key_id(key)
    with pytest.raises(CompanionError) as caught:
        licence.load_public_key(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    assert caught.value.problems[0].code == "bad-key"


def test_signing_key_is_generated_once_where_configured(tmp_path, monkeypatch):
    monkeypatch.setenv(licence.SIGNING_KEY_VARIABLE, str(tmp_path / "keys" / "vendor.pem"))
    first = licence.signing_key()
    assert (tmp_path / "keys" / "vendor.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys" / "vendor.pub.pem").exists()
    assert licence.key_id(licence.signing_key()) == licence.key_id(first)
    monkeypatch.delenv(licence.SIGNING_KEY_VARIABLE)
    monkeypatch.chdir(tmp_path)
    assert licence.signing_key_path() == tmp_path / "instance" / "signing-key.pem"
    licence.signing_key()
    assert os.path.exists(tmp_path / "instance" / "signing-key.pub.pem")


def test_regression_unused_bits_of_the_base64_signature_are_an_edit(activation, key):
    data = licence.export_licence(activation, key)
    envelope = json.loads(data)
    last = envelope["signature"].rstrip("=")[-1]
    twin = chr(ord(last) + 1)  # same high bits, different unused low bits: decodes to the same signature
    envelope["signature"] = envelope["signature"].replace(last + "==", twin + "==")
    assert code_of(licence.canonical_json(envelope) + b"\n", key.public_key()) == "bad-signature"
