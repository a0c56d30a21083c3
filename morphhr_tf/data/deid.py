"""De-identification: salted keys for patients and images.

Identifiers never leave the ingest; records carry
``HMAC-SHA256(salt, identifier)`` instead. The salt comes from, in order:
the ``salt`` argument, the ``MORPHHR_SALT`` environment variable, or a public
development salt (with a warning: keys made with it are pseudonymous, not
secret, because patient identifiers such as ``P_00001`` can be enumerated).
Keep the salt out of artifacts: it is read at run time and never written.
Splits hash the patient key, so they are deterministic for a given salt.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

SALT_ENV = "MORPHHR_SALT"
DEVELOPMENT_SALT = "morphhr-development-salt-not-secret"

_log = logging.getLogger(__name__)
_warned = False


def resolve_salt(salt: str | bytes | None = None) -> bytes:
    """Returns the salt to use: the argument, else ``$MORPHHR_SALT``, else the
    public development salt (logged once as a warning).

    Args:
        salt: an explicit salt; an empty string counts as not given.

    Returns:
        The salt as bytes.

    Raises:
        TypeError: for a salt that is neither str, bytes nor None.
    """
    global _warned
    if salt is not None and not isinstance(salt, str | bytes):
        raise TypeError(
            f"salt must be str, bytes or None. Received: {type(salt).__name__}"
        )
    if not salt:
        salt = os.environ.get(SALT_ENV, "")
    if not salt:
        if not _warned:
            _log.warning(
                "%s is not set: patient keys use the public development salt "
                "and are pseudonymous, not secret.",
                SALT_ENV,
            )
            _warned = True
        salt = DEVELOPMENT_SALT
    return salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)


def salted_hash(value: str, salt: str | bytes | None = None) -> str:
    """HMAC-SHA256 of ``value`` under ``salt`` (resolved), as 64 hex characters."""
    key = resolve_salt(salt)
    return hmac.new(key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()


def patient_key(patient_id: str, salt: str | bytes | None = None) -> str:
    """The salted key of a patient identifier (HMAC-SHA256 hex).

    Example:
        >>> patient_key("P_00001", "s3cret")[:12]
        '9bf109cbce4e'
    """
    return salted_hash("patient:" + str(patient_id), salt)


def study_key(study_uid: str, salt: str | bytes | None = None) -> str:
    """The salted key of a study (StudyInstanceUID; HMAC-SHA256 hex): an exam."""
    return salted_hash("study:" + str(study_uid), salt)


def image_key(image_id: str, salt: str | bytes | None = None) -> str:
    """The salted key of an image identity (HMAC-SHA256 hex)."""
    return salted_hash("image:" + str(image_id), salt)
