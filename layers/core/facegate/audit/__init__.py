"""The audit log: append-only and hash-chained, one chain per tenant, verifiable by the tenant.

Layout (table ``<prefix>-audit``, :class:`~facegate.store.models.AuditRecord`)
------------------------------------------------------------------------------
* Entries live at ``seq`` 1, 2, 3, ... in the tenant's own partition. Each entry's ``entry_hash`` is the
  sha256 of the canonical JSON (:func:`canonical_json`) of ``{tenant_id, seq, at, actor, action,
  details, prev_hash}``, and its ``prev_hash`` is the previous entry's ``entry_hash`` (64 zeros for
  seq 1). The tenant id and the seq are inside the hash, so an entry copied from another tenant's log, or
  moved to another seq, no longer matches its hash.
* The item at ``seq`` 0 is the tenant's **head**: ``head_seq`` is the newest entry's seq, and it mirrors
  that entry's ``at``, ``actor``, ``prev_hash`` and ``entry_hash`` (``action`` is ``audit.head``). A
  chain alone cannot show that its newest entries were deleted; the head can, because every append
  writes the new entry and the new head in one DynamoDB transaction: the entry only if its seq is free,
  the head only if it still points at the entry the new one chains to. Two concurrent appends can
  therefore never both succeed on the same head (no fork, no overwrite); the loser re-reads the head and
  retries. Keeping the head at seq 0 of the same partition keeps the whole log one ``Query`` away and
  inside the ``dynamodb:LeadingKeys`` confinement of the tenant's IAM session.

What verification proves, and what it cannot
---------------------------------------------
:meth:`AuditLog.verify` detects an edited field of any entry (with or without its hash recomputed: the
next entry's ``prev_hash``, or the head, no longer matches), a deleted entry, swapped or shifted
entries, deleted newest entries, inserted entries (beyond the head, between two seqs, or overwriting
one), and entries copied from another tenant. Someone able to write the table *and* willing to rewrite
the head consistently can still cut the log back to an earlier state, or rewrite it wholesale: the
table then holds exactly what an honest log of that length would hold, so nothing in it can tell. That
is what anchors are for: a :class:`ChainReport` (or the last entry of an export) kept outside the table
-- by the tenant, or written to object-locked storage -- and passed back as ``verify(ctx, anchor=...)``
proves the log still contains that entry unchanged, and hence everything before it.

Details are small (at most 8 KiB of canonical JSON) and never hold bytes: embeddings and images do not
belong in an audit log, which outlives the templates it describes.
"""

from facegate.audit.chain import (
    ACTION,
    GENESIS_HASH,
    HEAD_ACTION,
    HEAD_SEQ,
    JSON,
    MAX_DETAILS_BYTES,
    MAX_DETAILS_DEPTH,
    AuditEntry,
    AuditHead,
    ChainReport,
    Kind,
    canonical_json,
    chain_error,
    check_chain,
    compute_entry_hash,
    format_timestamp,
    normalise_details,
    parse_timestamp,
)
from facegate.audit.log import DEFAULT_MAX_ATTEMPTS, AuditLog

__all__ = [
    "ACTION",
    "DEFAULT_MAX_ATTEMPTS",
    "GENESIS_HASH",
    "HEAD_ACTION",
    "HEAD_SEQ",
    "JSON",
    "MAX_DETAILS_BYTES",
    "MAX_DETAILS_DEPTH",
    "AuditEntry",
    "AuditHead",
    "AuditLog",
    "ChainReport",
    "Kind",
    "canonical_json",
    "chain_error",
    "check_chain",
    "compute_entry_hash",
    "format_timestamp",
    "normalise_details",
    "parse_timestamp",
]
