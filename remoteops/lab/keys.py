"""Key generation for the lab: a fresh ed25519 key pair per host and one for the client."""

from __future__ import annotations

__all__ = ["ed25519_keypair"]


def ed25519_keypair() -> tuple[bytes, str]:
    """Return (OpenSSH private key PEM, public key line) for a new ed25519 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode()
