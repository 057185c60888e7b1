"""``IdempotencyStoreContract``: what the ASGI middleware relies on from an idempotency store.

Subclass it with ``make_store(max_entries, clock)`` returning your store,
bounded to ``max_entries`` live records where it can be and reading time
from ``clock()`` (Unix seconds) where it keeps time itself.  A store whose
time runs elsewhere (Redis expires keys on its own clock) overrides
``advance(clock, seconds)`` to really wait; the durations used here are a
second or less.  A store that cannot be bounded by a count overrides
``test_a_full_store_refuses_new_keys_and_keeps_what_it_holds``, and one that
cannot fake a day overrides ``test_an_outcome_is_kept_a_day_by_default``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from strongroom.errors import IdempotencyUnavailableError
from strongroom.idempotency import IdempotencyStore, Outcome, State

__all__ = ["IdempotencyStoreContract"]

FP_A = "a" * 64
FP_B = "b" * 64
OUTCOME = Outcome(201, (("content-type", "application/json"), ("x-id", "7")), b'{"id":7}')


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class IdempotencyStoreContract:
    """First outcome kept and replayed, in-flight and mismatch answers, leases, atomicity."""

    def make_store(self, max_entries: int, clock: Callable[[], float]) -> IdempotencyStore:
        raise NotImplementedError("return your store, bounded and on this clock")

    def advance(self, clock: _Clock, seconds: float) -> None:
        """Let ``seconds`` pass for the store."""
        clock.now += seconds

    @pytest.fixture
    def clock(self) -> _Clock:
        return _Clock()

    @pytest.fixture
    def store(self, clock: _Clock) -> Iterator[Any]:
        store = self.make_store(1_000, clock)
        yield store
        close = getattr(store, "close", None)
        if close is not None:
            close()

    def test_the_first_request_runs_and_its_outcome_is_replayed(
        self, store: IdempotencyStore
    ) -> None:
        assert store.begin("phone.v1", "op-1", FP_A).state is State.NEW
        store.complete("phone.v1", "op-1", FP_A, OUTCOME)
        again = store.begin("phone.v1", "op-1", FP_A)
        assert again.state is State.REPLAY
        assert again.outcome == OUTCOME

    def test_a_running_request_answers_in_flight(self, store: IdempotencyStore) -> None:
        assert store.begin("phone.v1", "op-1", FP_A).state is State.NEW
        assert store.begin("phone.v1", "op-1", FP_A).state is State.IN_FLIGHT
        assert store.begin("phone.v1", "op-1", FP_A).outcome is None

    def test_the_same_key_with_another_request_is_a_mismatch(self, store: IdempotencyStore) -> None:
        assert store.begin("phone.v1", "op-1", FP_A).state is State.NEW
        assert store.begin("phone.v1", "op-1", FP_B).state is State.MISMATCH
        store.complete("phone.v1", "op-1", FP_A, OUTCOME)
        assert store.begin("phone.v1", "op-1", FP_B).state is State.MISMATCH
        store.complete("phone.v1", "op-1", FP_B, Outcome(200, (), b"other"))
        assert store.begin("phone.v1", "op-1", FP_A).outcome == OUTCOME

    def test_keys_are_scoped(self, store: IdempotencyStore) -> None:
        store.begin("phone.v1", "op-1", FP_A)
        store.complete("phone.v1", "op-1", FP_A, OUTCOME)
        assert store.begin("laptop.v1", "op-1", FP_A).state is State.NEW
        assert store.begin("laptop.v1", "op-1", FP_B).state is State.MISMATCH

    def test_the_first_outcome_stays(self, store: IdempotencyStore) -> None:
        store.begin("phone.v1", "op-1", FP_A)
        store.complete("phone.v1", "op-1", FP_A, OUTCOME)
        store.complete("phone.v1", "op-1", FP_A, Outcome(200, (), b"second"))
        assert store.begin("phone.v1", "op-1", FP_A).outcome == OUTCOME

    def test_release_frees_only_its_own_marker(self, store: IdempotencyStore) -> None:
        store.begin("phone.v1", "op-1", FP_A)
        store.release("phone.v1", "op-1", FP_B)
        assert store.begin("phone.v1", "op-1", FP_A).state is State.IN_FLIGHT
        store.release("phone.v1", "op-1", FP_A)
        assert store.begin("phone.v1", "op-1", FP_B).state is State.NEW
        store.complete("phone.v1", "op-1", FP_B, OUTCOME)
        store.release("phone.v1", "op-1", FP_B)  # a stored outcome is not a marker
        assert store.begin("phone.v1", "op-1", FP_B).state is State.REPLAY

    def test_a_lease_runs_out_so_a_crashed_server_frees_its_key(
        self, store: IdempotencyStore, clock: _Clock
    ) -> None:
        assert store.begin("phone.v1", "op-1", FP_A, lease_s=0.3).state is State.NEW
        self.advance(clock, 0.5)
        assert store.begin("phone.v1", "op-1", FP_A).state is State.NEW

    def test_an_outcome_expires_after_keep_s(self, store: IdempotencyStore, clock: _Clock) -> None:
        store.begin("phone.v1", "op-1", FP_A)
        store.complete("phone.v1", "op-1", FP_A, OUTCOME, keep_s=0.5)
        self.advance(clock, 0.2)
        assert store.begin("phone.v1", "op-1", FP_A).state is State.REPLAY
        self.advance(clock, 0.5)
        assert store.begin("phone.v1", "op-1", FP_B).state is State.NEW

    def test_an_outcome_is_kept_a_day_by_default(
        self, store: IdempotencyStore, clock: _Clock
    ) -> None:
        store.begin("phone.v1", "op-1", FP_A)
        store.complete("phone.v1", "op-1", FP_A, OUTCOME)
        self.advance(clock, 86_399)
        assert store.begin("phone.v1", "op-1", FP_A).state is State.REPLAY

    def test_an_outcome_comes_back_byte_for_byte(self, store: IdempotencyStore) -> None:
        outcome = Outcome(
            418, (("x-b", "2"), ("x-a", "1"), ("x-a", "0")), bytes(range(256)) * 3 + b"\x00"
        )
        store.begin("phone.v1", "op:with:colons", FP_A)
        store.complete("phone.v1", "op:with:colons", FP_A, outcome)
        assert store.begin("phone.v1", "op:with:colons", FP_A).outcome == outcome
        store.begin("phone.v1", "empty", FP_A)
        store.complete("phone.v1", "empty", FP_A, Outcome(204, (), b""))
        assert store.begin("phone.v1", "empty", FP_A).outcome == Outcome(204, (), b"")

    def test_a_full_store_refuses_new_keys_and_keeps_what_it_holds(self, clock: _Clock) -> None:
        store = self.make_store(3, clock)
        for key in ("a", "b", "c"):
            assert store.begin("phone.v1", key, FP_A).state is State.NEW
        store.complete("phone.v1", "a", FP_A, OUTCOME)
        with pytest.raises(IdempotencyUnavailableError):
            store.begin("phone.v1", "d", FP_A)
        assert store.begin("phone.v1", "a", FP_A).outcome == OUTCOME
        assert store.begin("phone.v1", "b", FP_A).state is State.IN_FLIGHT

    def test_concurrent_begins_with_one_key_exactly_one_is_new(
        self, store: IdempotencyStore
    ) -> None:
        threads = 16
        barrier = threading.Barrier(threads)
        answers: list[State] = []
        guard = threading.Lock()

        def begin() -> None:
            barrier.wait(timeout=30)
            answer = store.begin("phone.v1", "raced", FP_A).state
            with guard:
                answers.append(answer)

        workers = [threading.Thread(target=begin) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert sorted(state.value for state in answers) == ["in_flight"] * (threads - 1) + ["new"]
