"""Every error facegate raises, in one module.

Class names are a contract: Step Functions ``ErrorEquals`` clauses match them by name, so renaming one
is a breaking change (a test checks every name used in ASL exists here).
"""

from __future__ import annotations


class FacegateError(Exception):
    """Base of every facegate error. ``code`` is stable and machine-readable."""

    code = "facegate.error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- untrusted image input -------------------------------------------------------------------------


class ImageError(FacegateError):
    """The bytes given as an image cannot be used. Nothing was decoded or stored."""

    code = "image.invalid"


class EmptyImageError(ImageError):
    code = "image.empty"


class NotAnImageError(ImageError):
    code = "image.not_an_image"


class UnsupportedFormatError(ImageError):
    code = "image.unsupported_format"


class TruncatedImageError(ImageError):
    code = "image.truncated"


class CorruptImageError(ImageError):
    code = "image.corrupt"


class ImageTooLargeError(ImageError):
    """Too many bytes: refused before any parsing."""

    code = "image.too_large"


class TooManyPixelsError(ImageError):
    """Declared dimensions above the pixel limit: refused from the header, before decoding."""

    code = "image.too_many_pixels"


# --- models ----------------------------------------------------------------------------------------


class ModelError(FacegateError):
    code = "model.error"


class ModelNotFoundError(ModelError):
    """The built model files are missing: run the model build."""

    code = "model.not_found"


class ModelIntegrityError(ModelError):
    """A model file does not match the checksum recorded when it was built."""

    code = "model.integrity"


class ModelBuildError(ModelError):
    """The model build failed (an optimised graph differs from the original, or a step failed)."""

    code = "model.build_failed"


class EmbeddingMismatchError(FacegateError):
    """Embeddings from different model versions (or shapes) cannot be compared."""

    code = "embedding.mismatch"


# --- fetching registry artefacts -------------------------------------------------------------------


class FetchError(FacegateError):
    """A registry download failed or is unusable."""

    code = "fetch.failed"


class ChecksumMismatchError(FetchError):
    """A downloaded or extracted file does not have the pinned sha256."""

    code = "fetch.checksum_mismatch"
