"""Offline licence files: an activation as canonical JSON, signed with Ed25519.

A licence file is one line of canonical JSON (keys sorted, no spaces, UTF-8) holding the format, the
algorithm, the signing key's id, the licence document and the signature over everything else. The
installed system checks it with the vendor's public key alone, without the database. Verification
re-serialises the file canonically and refuses it unless it is byte for byte what was signed, so any edit
(a value, a key, even a space) is detected.

Keys come from configuration, never from code: the private key is the PEM file named by
`COMPANION_SIGNING_KEY`, else `instance/signing-key.pem` under the current directory, generated on first use
(with its public key beside it, `signing-key.pub.pem`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.problem import refusal
from engine.catalogue.source import MAX_DEPTH, nesting_depth, no_json_constant

FORMAT = "companion-licence/1"
ALGORITHM = "Ed25519"
SIGNING_KEY_VARIABLE = "COMPANION_SIGNING_KEY"
KEY_FILE = "signing-key.pem"
_FIELDS = ("algorithm", "format", "key_id", "licence", "signature")



def canonical_json(value) -> bytes:
    """Return VALUE as canonical JSON bytes: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


# --- keys --------------------------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    """Return a new Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """Return the private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """Return the public half of KEY as SubjectPublicKeyInfo PEM."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Return a short fingerprint of the public key (16 hex digits of its SHA-256)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read(source: str | os.PathLike | bytes, what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as error:
        raise refusal("missing-key", f"cannot read the {what} {source}: {error.strerror}",
                      f"give the path of a PEM file holding an Ed25519 {what}") from None


def load_private_key(source: str | os.PathLike | bytes) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from a PEM file path or PEM bytes."""
    try:
        key = serialization.load_pem_private_key(_read(source, "private key"), password=None)
    except (ValueError, TypeError) as error:
        raise refusal("bad-key", f"not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise refusal("bad-key", "the private key is not an Ed25519 key")
    return key


def load_public_key(source: str | os.PathLike | bytes) -> Ed25519PublicKey:
    """Load an Ed25519 public key from a PEM file path or PEM bytes."""
    try:
        key = serialization.load_pem_public_key(_read(source, "public key"))
    except (ValueError, TypeError) as error:
        raise refusal("bad-key", f"not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise refusal("bad-key", "the public key is not an Ed25519 key")
    return key


def signing_key_path() -> Path:
    """Return the configured private key path: `COMPANION_SIGNING_KEY` or instance/signing-key.pem."""
    configured = os.environ.get(SIGNING_KEY_VARIABLE, "").strip()
    return Path(configured) if configured else Path.cwd() / "instance" / KEY_FILE


def signing_key(path: str | os.PathLike | None = None) -> Ed25519PrivateKey:
    """Return the signing key at PATH (default: `signing_key_path()`), generating it there on first use.

    A new key is written with mode 0600 and exclusive creation, so two processes starting together keep
    one key; its public half is written beside it for distribution to installed systems.
    """
    path = Path(path) if path is not None else signing_key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = generate_private_key()
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race: use its key
        else:
            with os.fdopen(descriptor, "wb") as file:
                file.write(private_key_pem(key))
            public_path(path).write_bytes(public_key_pem(key))
    return load_private_key(path)


def public_path(private_path: str | os.PathLike) -> Path:
    """Return where the public key of the private key file is kept."""
    private_path = Path(private_path)
    name = private_path.name[:-4] if private_path.name.endswith(".pem") else private_path.name
    return private_path.with_name(f"{name}.pub.pem")


# --- licence files -----------------------------------------------------------------------------------


def license_document(activation, issued_to: dict | None = None) -> dict:
    """Return the licence document of an activation (an `engine.locker.Activation` or its JSON)."""
    data = activation.to_json() if hasattr(activation, "to_json") else dict(activation)
    document = {
        "activation_id": data["id"],
        "kind": data["kind"],
        "parent": data.get("parent"),
        "configuration": data["configuration"],
        "rules_version": data["rules_version"],
        "badges": list(data.get("badges", [])),
        "lines": [{"reference": line["reference"], "description": line.get("description", ""),
                   "units": line["units"]} for line in data.get("lines", [])],
        "activated_on": data["activated_on"],
        "term_start": data["term_start"],
        "issued_at": data.get("created_at"),
    }
    if issued_to:
        document["issued_to"] = dict(issued_to)
    return document


def export_license(activation, private_key: Ed25519PrivateKey, issued_to: dict | None = None) -> bytes:
    """Return the signed licence file of an activation."""
    unsigned = {"format": FORMAT, "algorithm": ALGORITHM, "key_id": key_id(private_key),
                "licence": license_document(activation, issued_to)}
    signature = private_key.sign(canonical_json(unsigned))
    return canonical_json({**unsigned, "signature": base64.b64encode(signature).decode("ascii")}) + b"\n"


def _parse(raw: bytes):
    """Return the JSON value of a licence file, or raise `malformed-licence`."""
    again = "export it again with: companion license export ACTIVATION_ID"
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=no_json_constant)
    except RecursionError:
        raise refusal("malformed-licence", f"the licence file is nested more than {MAX_DEPTH} levels deep",
                      again) from None
    except (UnicodeDecodeError, ValueError) as error:
        raise refusal("malformed-licence", f"the licence file is not JSON: {error}", again) from None
    # A licence is a few levels deep; far deeper nesting is not a licence, and re-serialising it would exhaust
    # the stack.
    if nesting_depth(value) > MAX_DEPTH:
        raise refusal("malformed-licence", f"the licence file is nested more than {MAX_DEPTH} levels deep", again)
    return value


def verify_license(data: bytes | str, public_key: Ed25519PublicKey) -> dict:
    """Return the licence document of a signed licence file, or raise `malformed-licence`/`bad-signature`."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    envelope = _parse(raw)
    if not isinstance(envelope, dict) or sorted(envelope) != sorted(_FIELDS):
        raise refusal("malformed-licence", "the licence file does not have the fields "
                      + ", ".join(_FIELDS), "export it again with: companion license export ACTIVATION_ID")
    if envelope["format"] != FORMAT or envelope["algorithm"] != ALGORITHM:
        raise refusal("malformed-licence",
                      f"unsupported licence format {envelope['format']!r} / algorithm {envelope['algorithm']!r}",
                      f"this version reads {FORMAT} signed with {ALGORITHM}")
    if not isinstance(envelope["licence"], dict) or not isinstance(envelope["signature"], str):
        raise refusal("malformed-licence", "the licence or its signature has the wrong type")
    try:
        signature = base64.b64decode(envelope["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise refusal("malformed-licence", "the signature is not base64") from None
    if base64.b64encode(signature).decode("ascii") != envelope["signature"]:  # unused bits changed
        raise refusal("bad-signature", "the signature was edited", "use the file exactly as exported")
    unsigned = {name: envelope[name] for name in _FIELDS if name != "signature"}
    try:
        public_key.verify(signature, canonical_json(unsigned))
    except InvalidSignature:
        hint = "the file was changed after it was signed, or it was signed with another key"
        if envelope["key_id"] != key_id(public_key):
            hint = f"it was signed by key {envelope['key_id']}, not by this public key ({key_id(public_key)})"
        raise refusal("bad-signature", "the licence signature does not match its content", hint) from None
    if raw not in (canonical_json(envelope), canonical_json(envelope) + b"\n"):
        raise refusal("bad-signature", "the licence file was edited after signing (its bytes differ from the "
                      "signed form)", "use the file exactly as exported")
    return envelope["licence"]
