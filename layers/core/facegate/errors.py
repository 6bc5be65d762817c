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


class FaceTooSmallError(ImageError):
    """The subject's face is too small (or turned too far) to be recognised: retake the photo."""

    code = "image.face_too_small"


class LowQualityError(ImageError):
    """The subject's face is blurred, too dark or overexposed: retake the photo."""

    code = "image.low_quality"


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


# --- requests, tenancy and storage ----------------------------------------------------------------


class InvalidIdentifierError(FacegateError):
    """An id in a request is malformed (ids never contain the key separator '#')."""

    code = "request.invalid_identifier"


class InvalidRequestError(FacegateError):
    """A request or workflow input that does not validate (missing field, bad metadata, wrong prefix)."""

    code = "request.invalid"


class PhotosDisagreeError(InvalidRequestError):
    """The photos of one enrolment do not show one person. The workflow records it as a refusal."""

    code = "image.photos_disagree"


class EnrolmentPhotosError(InvalidRequestError):
    """An enrolment names no photo, more than ``facegate.embedding.MAX_REFERENCES``, the same photo
    twice, or its photo both as one and as a list."""

    code = "request.enrolment_photos"


class GalleryNotFoundError(FacegateError):
    """No such gallery for this tenant. Raised identically for another tenant's gallery: no existence leak."""

    code = "gallery.not_found"


class ResourceNotFoundError(FacegateError):
    """No such template or consent among the caller's own (another tenant's is the same answer)."""

    code = "resource.not_found"


class UnknownRequestError(FacegateError):
    """No request of this id was submitted by this tenant (or its record has expired). Raised identically
    for another tenant's request: no existence leak."""

    code = "request.unknown"


class ClientTokenReusedError(FacegateError):
    """A client token already named a different request (another body or operation): a token names
    one request, retried as often as needed, never two."""

    code = "request.client_token_reused"


class AlreadyExistsError(FacegateError):
    """What the caller asks to create exists already (a tenant id, a user name): the caller's to change."""

    code = "request.already_exists"


class TenantNotFoundError(FacegateError):
    """No such tenant in the registry (operator paths only)."""

    code = "tenant.not_found"


class PolicyDeniedError(FacegateError):
    """The policy gate refused the request; ``decision`` carries the machine-readable reasons."""

    code = "policy.denied"

    def __init__(self, message: str, decision: object) -> None:
        super().__init__(message)
        self.decision = decision


class EnumerationRefusedError(PolicyDeniedError):
    """A verification was refused at matching time: the same face was verified against another
    subject within the window (1:1 calls adding up to 1:N). Audited as a denial like any other."""

    code = "request.enumeration_pattern"


class ConsentError(FacegateError):
    """A consent record is missing, expired, revoked or for another purpose."""

    code = "consent.invalid"


class CatalogError(FacegateError):
    """The use-case catalog or the Cedar policies fail validation."""

    code = "policy.catalog_invalid"


class AuditChainError(FacegateError):
    """The audit log's hash chain does not verify: an entry was altered, removed or reordered."""

    code = "audit.chain_broken"


class StorageError(FacegateError):
    """DynamoDB refused or failed a request (translated from the SDK's error at the adapter)."""

    code = "storage.failed"


class ConflictError(StorageError):
    """A conditional write lost a race (an audit append, a counter) and may be retried."""

    code = "storage.conflict"


class WriteConditionError(ConflictError):
    """A data write that was to commit with an audit entry failed its own condition (not a race on the
    audit head): nothing of the transaction was written. ``names`` says which writes refused."""

    code = "storage.condition_failed"

    def __init__(self, message: str, names: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.names = names


# --- fetching registry artefacts -------------------------------------------------------------------


class FetchError(FacegateError):
    """A registry download failed or is unusable."""

    code = "fetch.failed"


class ChecksumMismatchError(FetchError):
    """A downloaded or extracted file does not have the pinned sha256."""

    code = "fetch.checksum_mismatch"


# --- tenant registration ---------------------------------------------------------------------------


class RegistrationError(InvalidRequestError):
    """A registration names a sector, country or jurisdiction outside facegate's closed vocabularies
    (``facegate.policy.vocabulary``). The message says which canonical value to use; nothing is mapped."""

    code = "registration.invalid"


class UnknownSectorError(RegistrationError):
    code = "registration.unknown_sector"


class UnknownCountryError(RegistrationError):
    """Not an officially assigned ISO 3166-1 alpha-2 code, written exactly (``US``, not ``us`` or ``USA``)."""

    code = "registration.unknown_country"


class UnknownJurisdictionError(RegistrationError):
    """Neither the country code nor an ISO 3166-2 subdivision code of the registered country."""

    code = "registration.unknown_jurisdiction"


# --- untrusted image input: decode budgets ---------------------------------------------------------


class DecodeMemoryError(TooManyPixelsError):
    """Decoding would need more memory than the decode budget: refused from the header, before decoding.

    The need is counted as pixels × channels × bytes per sample (and a JPEG's coefficient buffer), so a
    16-bit RGBA image is refused at fewer pixels than an 8-bit RGB one. A subclass of the pixel-limit
    error: the remedy is the same (send a smaller image).
    """

    code = "image.decode_memory"


class TooManyScansError(ImageError):
    """A JPEG with more scans than encoders write. Each scan is another pass over the whole image and can
    cost only a few bytes, so a small file with thousands of them takes minutes to decode."""

    code = "image.too_many_scans"


# --- the model card and the accountability report ---------------------------------------------------


class AccountabilityError(FacegateError):
    """The model card or an accountability report cannot be generated truthfully from its sources."""

    code = "accountability.invalid"


class UnknownUseCaseError(AccountabilityError):
    """An approval names a use case this version's catalog does not hold: nothing can be reported for it."""

    code = "accountability.unknown_use_case"
