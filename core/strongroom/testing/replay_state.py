"""``AsyncReplayStateContract``: what the ASGI middleware relies on from the awaitable steps.

Subclass it with ``make_state(clock)`` returning your backend (a
``NonceCache`` and ``IdempotencyStore`` that is also an
:class:`~strongroom.idempotency.AsyncReplayState`), reading time from
``clock()`` (Unix seconds) where it keeps time itself.  Each test runs its
steps in ``asyncio.run`` and awaits ``aclose()`` before the loop ends, and
some tests use two loops one after the other, as a server's tests and
workers do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from strongroom.idempotency import AsyncReplayState, Claim, Outcome, State

__all__ = ["AsyncReplayStateContract"]

FP_A = "a" * 64
FP_B = "b" * 64
OUTCOME = Outcome(201, (("content-type", "application/json"),), b'{"id":7}')
LATER = 2_000_000_000.0  # an expiry far ahead of any clock used here


class AsyncReplayStateContract:
    """Nonce once, claim only with a new nonce, outcomes kept and replayed, across loops."""

    def make_state(self, clock: Callable[[], float]) -> Any:
        raise NotImplementedError("return your backend, reading time from clock")

    @pytest.fixture
    def state(self) -> Iterator[Any]:
        state = self.make_state(lambda: 1_000_000.0)
        assert isinstance(state, AsyncReplayState)
        yield state
        state.close()  # type: ignore[attr-defined]  # a slot backend's

    @staticmethod
    def run(state: Any, steps: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """``steps`` on a fresh event loop, the backend's loop resources closed after."""

        async def then_close() -> Any:
            try:
                return await steps()
            finally:
                await state.aclose()

        return asyncio.run(then_close())

    def test_a_nonce_is_admitted_once(self, state: Any) -> None:
        async def steps() -> list[Any]:
            return [await state.admit("phone.v1", "n1", LATER) for _ in range(2)]

        first, second = self.run(state, steps)
        assert first.state is State.NEW
        assert second is None
        assert state.add("phone.v1", "n1", LATER) is False  # the blocking steps see it

    def test_a_claim_is_begun_with_a_new_nonce_and_its_outcome_replayed(self, state: Any) -> None:
        claim = Claim("phone.v1", "op-1", FP_A)

        async def steps() -> list[Any]:
            first = await state.admit("phone.v1", "n1", LATER, claim)
            await state.complete_async("phone.v1", "op-1", FP_A, OUTCOME)
            return [first, await state.admit("phone.v1", "n2", LATER, claim)]

        first, retry = self.run(state, steps)
        assert first.state is State.NEW
        assert (retry.state, retry.outcome) == (State.REPLAY, OUTCOME)
        assert state.begin("phone.v1", "op-1", FP_A).outcome == OUTCOME

    def test_a_replayed_nonce_claims_nothing(self, state: Any) -> None:
        async def steps() -> Any:
            await state.admit("phone.v1", "n1", LATER)
            return await state.admit("phone.v1", "n1", LATER, Claim("phone.v1", "op-1", FP_A))

        assert self.run(state, steps) is None
        assert state.begin("phone.v1", "op-1", FP_A).state is State.NEW

    def test_a_running_claim_is_in_flight_and_another_request_a_mismatch(self, state: Any) -> None:
        async def steps() -> list[State]:
            answers = [
                await state.admit("phone.v1", nonce, LATER, Claim("phone.v1", "op-1", fp))
                for nonce, fp in (("n1", FP_A), ("n2", FP_A), ("n3", FP_B))
            ]
            return [answer.state for answer in answers]

        assert self.run(state, steps) == [State.NEW, State.IN_FLIGHT, State.MISMATCH]

    def test_a_released_claim_can_be_begun_again(self, state: Any) -> None:
        claim = Claim("phone.v1", "op-1", FP_A)

        async def steps() -> State:
            await state.admit("phone.v1", "n1", LATER, claim)
            await state.release_async("phone.v1", "op-1", FP_B)  # not its marker: kept
            held = await state.admit("phone.v1", "n2", LATER, claim)
            assert held.state is State.IN_FLIGHT
            await state.release_async("phone.v1", "op-1", FP_A)
            return (await state.admit("phone.v1", "n3", LATER, claim)).state  # type: ignore[no-any-return]

        assert self.run(state, steps) is State.NEW

    def test_the_first_outcome_stays(self, state: Any) -> None:
        async def steps() -> None:
            await state.admit("phone.v1", "n1", LATER, Claim("phone.v1", "op-1", FP_A))
            await state.complete_async("phone.v1", "op-1", FP_A, OUTCOME)
            await state.complete_async("phone.v1", "op-1", FP_A, Outcome(200, (), b"second"))

        self.run(state, steps)
        assert state.begin("phone.v1", "op-1", FP_A).outcome == OUTCOME

    def test_concurrent_admits_of_one_nonce_exactly_one_claims(self, state: Any) -> None:
        claim = Claim("phone.v1", "raced", FP_A)

        async def steps() -> list[Any]:
            admits = (state.admit("phone.v1", "n1", LATER, claim) for _ in range(16))
            return list(await asyncio.gather(*admits))

        answers = self.run(state, steps)
        assert [answer.state for answer in answers if answer is not None] == [State.NEW]
        assert state.begin("phone.v1", "raced", FP_A).state is State.IN_FLIGHT

    def test_each_event_loop_in_turn_is_served(self, state: Any) -> None:
        for nonce in ("n1", "n2", "n3"):

            async def steps(nonce: str = nonce) -> Any:
                return await state.admit("phone.v1", nonce, LATER)

            assert self.run(state, steps).state is State.NEW
        assert state.add("phone.v1", "n2", LATER) is False
