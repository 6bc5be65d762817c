"""Property: random interleavings of tenants, galleries, enrolments, deletions and searches never
return or touch another tenant's data.

The tenants deliberately reuse the same gallery ids and subject ids, so only the tenant part of each
key keeps them apart. A plain model (dicts) says what each tenant should see; after every step the
repositories must agree with it exactly, for every tenant.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facegate.embedding import MODEL_VERSION
from facegate.match import GalleryTemplate, search
from facegate.match.calibration import Calibration
from facegate.store.repositories import Galleries, Gallery, Templates
from facegate.tenancy import TenantContext
from facegate.vision.embedder import Embedding

GALLERY_IDS = ("front-gate", "staff", "visitors")
SUBJECTS = ("alice", "bob", "carol", "dave")
FUTURE = datetime.now(UTC) + timedelta(days=30)


def _embedding(seed: int) -> Embedding:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return Embedding((v / np.linalg.norm(v)).astype(np.float32), MODEL_VERSION)


operation = st.one_of(
    st.tuples(st.just("create"), st.integers(0, 2), st.sampled_from(GALLERY_IDS)),
    # Few distinct faces: the same face is often enrolled by several tenants, and searched for.
    st.tuples(
        st.just("enrol"), st.integers(0, 2), st.sampled_from(GALLERY_IDS), st.sampled_from(SUBJECTS), st.integers(0, 7)
    ),
    st.tuples(st.just("delete"), st.integers(0, 2), st.sampled_from(SUBJECTS)),
    st.tuples(st.just("search"), st.integers(0, 2), st.sampled_from(GALLERY_IDS), st.integers(0, 7)),
)


@dataclass
class World:
    """What each tenant should see: tenant → gallery → {template_id: subject}."""

    contexts: list[TenantContext]
    galleries: dict[str, dict[str, Gallery]] = field(default_factory=dict)
    templates: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)


def _check(world: World, galleries: Galleries, templates: Templates) -> None:
    for ctx in world.contexts:
        mine = world.templates.get(ctx.tenant_id, {})
        assert {g.gallery_id for g in galleries.list_all(ctx)} == set(world.galleries.get(ctx.tenant_id, {}))
        for gallery_id in GALLERY_IDS:
            stored = {t.template_id: t.subject_id for t in templates.in_gallery(ctx, gallery_id)}
            assert stored == mine.get(gallery_id, {})
        for subject in SUBJECTS:
            got = {t.template_id for t in templates.of_subject(ctx, subject)}
            want = {tid for g in mine.values() for tid, s in g.items() if s == subject}
            assert got == want


def _run(dynamo: str, ops: list[tuple[object, ...]]) -> None:
    run = uuid.uuid4().hex[:8]
    world = World([TenantContext(tenant_id=f"t{i}-{run}", actor="prop") for i in range(3)])
    galleries, templates = Galleries(), Templates()
    calibration = Calibration.packaged()
    for op in ops:
        kind, who = op[0], world.contexts[int(op[1])]  # type: ignore[call-overload]
        own = world.galleries.setdefault(who.tenant_id, {})
        mine = world.templates.setdefault(who.tenant_id, {})
        if kind == "create" and op[2] not in own:
            own[str(op[2])] = galleries.create(who, str(op[2]), name="g", use_case="access_control", max_size=1000)
        elif kind == "enrol" and op[2] in own:
            t = templates.add(
                who,
                own[str(op[2])],
                subject_id=str(op[3]),
                consent_id="c",
                embedding=_embedding(int(op[4])),
                expires_at=FUTURE,  # type: ignore[call-overload]
            )
            mine.setdefault(str(op[2]), {})[t.template_id] = str(op[3])
        elif kind == "delete":
            doomed = templates.of_subject(who, str(op[2]))
            assert templates.delete(who, doomed) == len(doomed)
            for g in mine.values():
                for tid in [tid for tid, s in g.items() if s == op[2]]:
                    del g[tid]
        elif kind == "search":
            pool = [
                GalleryTemplate(t.template_id, t.subject_id, t.embedding) for t in templates.in_gallery(who, str(op[2]))
            ]
            probe = _embedding(int(op[3]))  # type: ignore[call-overload]
            found = search(probe, pool, threshold=0.5, top_k=50, calibration=calibration)
            own = mine.get(str(op[2]), {})
            assert {c.template_id for c in found.candidates} <= set(own)
            # The same face enrolled here is found; the same face enrolled by another tenant is not.
            same_face_here = {s for tid, s in own.items() if tid in {t.template_id for t in pool}}
            assert {c.subject_id for c in found.candidates} <= same_face_here
    # Every tenant's whole view, once the interleaving is done: a write that touched another tenant's
    # rows, or a read key that reached them, shows here (searches are checked as they happen).
    _check(world, galleries, templates)


@pytest.mark.dynamo_backends("moto")
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=12))
def test_no_interleaving_crosses_tenants_on_moto(dynamo: str, ops: list[tuple[object, ...]]) -> None:
    _run(dynamo, ops)


@pytest.mark.dynamo_backends("dynamodb-local")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=12))
def test_no_interleaving_crosses_tenants_on_dynamodb_local(dynamo: str, ops: list[tuple[object, ...]]) -> None:
    _run(dynamo, ops)
