"""RSA keys, JWKS documents and JWTs for the loopback fakes and their tests.

Everything here is test tooling: keys are generated fresh (RSA-2048, e=65537) and never leave the machine.

API in prose:
- `generate_rsa_key()` makes a private key; `SigningKey(kid=None, key=None)` pairs one with a key id and
  renders it as a JWK (`public_jwk()`), a PUBLIC KEY PEM (`public_pem()`) or a PKCS8 PEM (`private_pem()`).
- `jwk_from_public_key(pub, kid)` and `render_jwks(keys)` build the `{"keys": [...]}` document Google serves at
  /oauth2/v3/certs (`kid, n, e` base64url without padding, `alg RS256, kty RSA, use sig`);
  `public_key_from_jwk(jwk)` goes the other way (used by tests to verify what a fake signed).
- `make_service_account_keyfile(path, token_uri, ...)` writes a Google service-account key file (the JSON that
  GOOGLE_APPLICATION_CREDENTIALS points at) and returns a `ServiceAccountKey` describing it;
  `load_service_account_keyfile(path)` reads one back.
- `sign_jwt(claims, key, kid, alg='RS256', header_extra=None, secret=None)` produces compact JWTs. Besides honest
  RS256 tokens it makes the deliberately bad ones verifier tests need: `alg='none'` (empty signature),
  `alg='HS256'` HMAC-signed with `secret` (e.g. the RSA public key PEM, for algorithm-confusion attacks), or RS256
  signed with the wrong key (just pass another key). `header_extra` is merged into the header last, so it can
  also lie about `alg` or `kid`.
- `decode_jwt_unverified(token)` splits a token into (header, claims, signing_input, signature) and
  `verify_rs256(token, public_key)` checks an RS256 signature; both raise `JwtError` on anything malformed.
"""
import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import os
import secrets

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

RSA_BITS = 2048
RSA_EXPONENT = 65537
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class JwtError(ValueError):
    """A token that is malformed or whose signature does not verify."""


def b64url_encode(data):
    """base64url without padding, as JWS and JWK use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    """Strict base64url decoding of unpadded text; raises JwtError on bad characters or length."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "strict")
    if "=" in text or len(text) % 4 == 1:
        raise JwtError("bad base64url length or padding")
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    if any(ch not in alphabet for ch in text):
        raise JwtError("bad base64url character")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JwtError(f"bad base64url: {exc}") from exc


def _int_to_b64url(value):
    length = (value.bit_length() + 7) // 8
    return b64url_encode(value.to_bytes(length, "big"))


def generate_rsa_key(bits=RSA_BITS):
    """A fresh RSA private key (cryptography's RSAPrivateKey)."""
    return rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=bits)


def public_pem(key):
    """SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY") of a private or public RSA key, as bytes."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_pem(key):
    """Unencrypted PKCS8 PEM ("BEGIN PRIVATE KEY") of a private key, as bytes."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def new_kid():
    """A key id shaped like Google's (40 hex chars)."""
    return secrets.token_hex(20)


def jwk_from_public_key(pub, kid):
    """The JWK Google publishes for one RSA signing key."""
    if hasattr(pub, "public_key"):
        pub = pub.public_key()
    numbers = pub.public_numbers()
    return {"kid": kid, "n": _int_to_b64url(numbers.n), "e": _int_to_b64url(numbers.e),
            "alg": "RS256", "kty": "RSA", "use": "sig"}


def public_key_from_jwk(jwk):
    """RSAPublicKey from a JWK's n and e."""
    n = int.from_bytes(b64url_decode(jwk["n"]), "big")
    e = int.from_bytes(b64url_decode(jwk["e"]), "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


class SigningKey:
    """An RSA private key with its key id."""

    def __init__(self, kid=None, key=None):
        self.kid = kid or new_kid()
        self.key = key or generate_rsa_key()

    @property
    def public_key(self):
        return self.key.public_key()

    def public_jwk(self):
        return jwk_from_public_key(self.public_key, self.kid)

    def public_pem(self):
        return public_pem(self.key)

    def private_pem(self):
        return private_pem(self.key)

    def sign(self, claims, header_extra=None):
        return sign_jwt(claims, self.key, self.kid, header_extra=header_extra)


def render_jwks(keys):
    """`{"keys": [...]}` for SigningKey objects, (kid, key) pairs or ready JWK dicts."""
    out = []
    for item in keys:
        if isinstance(item, dict):
            out.append(dict(item))
        elif isinstance(item, SigningKey):
            out.append(item.public_jwk())
        else:
            kid, key = item
            out.append(jwk_from_public_key(key, kid))
    return {"keys": out}


@dataclasses.dataclass
class ServiceAccountKey:
    """What make_service_account_keyfile wrote (and the private key behind it)."""
    path: str
    client_email: str
    private_key_id: str
    private_key: object  # RSAPrivateKey
    token_uri: str
    info: dict  # the JSON written to `path`

    @property
    def public_key(self):
        return self.private_key.public_key()


def service_account_email(name="followupd", project_id="followupd-test"):
    return f"{name}@{project_id}.iam.gserviceaccount.com"


def make_service_account_keyfile(path, token_uri, project_id="followupd-test", client_email=None, key=None,
                                 private_key_id=None):
    """Write a Google service-account key file (mode 0600) and return a ServiceAccountKey."""
    key = key or generate_rsa_key()
    client_email = client_email or service_account_email(project_id=project_id)
    private_key_id = private_key_id or new_kid()
    client_id = str(int(hashlib.sha256(client_email.encode()).hexdigest(), 16))[:21]
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": private_key_id,
        "private_key": private_pem(key).decode("ascii"),
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
        handle.write("\n")
    return ServiceAccountKey(path=path, client_email=client_email, private_key_id=private_key_id,
                             private_key=key, token_uri=token_uri, info=info)


def load_service_account_keyfile(path):
    """Read a key file written by make_service_account_keyfile (or by Google) back into a ServiceAccountKey."""
    with open(path, "r", encoding="utf-8") as handle:
        info = json.load(handle)
    key = serialization.load_pem_private_key(info["private_key"].encode("ascii"), password=None)
    return ServiceAccountKey(path=path, client_email=info["client_email"], private_key_id=info["private_key_id"],
                             private_key=key, token_uri=info.get("token_uri", ""), info=info)


def _json_segment(obj):
    return b64url_encode(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def sign_jwt(claims, key, kid, alg="RS256", header_extra=None, secret=None):
    """Compact JWT `header.payload.signature`.

    alg 'RS256' signs with the RSA private `key`; 'none' leaves the signature empty; 'HS256' HMACs with `secret`
    (bytes or str). `kid=None` omits the kid header. `header_extra` is applied last and may override anything.
    """
    header = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    header.update(header_extra or {})
    signing_input = f"{_json_segment(header)}.{_json_segment(claims)}".encode("ascii")
    algorithm = alg.upper()
    if algorithm == "RS256":
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif algorithm == "HS256":
        if secret is None:
            raise ValueError("HS256 needs a secret")
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    elif algorithm == "NONE":
        signature = b""
    else:
        raise ValueError(f"unsupported alg {alg!r}")
    return signing_input.decode("ascii") + "." + b64url_encode(signature)


def decode_jwt_unverified(token):
    """(header, claims, signing_input bytes, signature bytes); raises JwtError when malformed."""
    if isinstance(token, bytes):
        token = token.decode("ascii", "replace")
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("a JWT has three dot-separated parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwtError(f"bad JWT JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwtError("JWT header and claims must be JSON objects")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2])


def verify_rs256(token, public_key):
    """Claims of an RS256 token whose header says exactly alg RS256 and whose signature verifies."""
    header, claims, signing_input, signature = decode_jwt_unverified(token)
    if header.get("alg") != "RS256":
        raise JwtError(f"alg must be RS256, got {header.get('alg')!r}")
    try:
        public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise JwtError("bad signature") from exc
    return claims
