from __future__ import annotations

from allauth.mfa.adapter import DefaultMFAAdapter

from portal.crypto import keyring

# allauth keeps TOTP secrets and the recovery-code seed through these two hooks; by default they
# store plaintext. The associated data ties each ciphertext to its purpose.
_AAD = "allauth.mfa.authenticator.secret"


class PortalMFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        return keyring().encrypt(text, aad=_AAD)

    def decrypt(self, encrypted_text: str) -> str:
        return keyring().decrypt(encrypted_text, aad=_AAD)
