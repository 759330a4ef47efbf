"""Context: ids, chaining and immutability."""

from __future__ import annotations

import pytest

from vendhub.core.context import Context


def test_ids_are_unique_and_ordered_within_a_process() -> None:
    ids = [Context().id for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert ids == sorted(ids)


def test_child_context_points_at_its_parent() -> None:
    vend = Context(user_id="kiosk")
    payment = vend.child()
    assert payment.parent_id == vend.id
    assert payment.user_id == "kiosk"
    assert payment.id != vend.id


def test_context_is_immutable() -> None:
    context = Context()
    with pytest.raises(AttributeError):
        context.user_id = "someone"  # type: ignore[misc]
