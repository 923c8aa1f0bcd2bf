"""An HTTP JSON API over a saved model (`s2gr serve`): FastAPI on uvicorn, with request batching.

Endpoints (the OpenAPI page is at `/docs`, the schema at `/openapi.json`):
* `POST /recommend` `{"histories": [[item ids, oldest first], ...]}` (or `"history": [...]` for one user),
  `top_k` (1..`max_top_k`, default 10), `exclude_seen` (default true), `skip_unknown` (default false),
  `epsilon` (the share of the top-k cold items may take, default the server's `--epsilon`) ->
  `{"recommendations": [[{"item_id", "score", "title"}, ...], ...], "skipped_unknown": [count per history]}`;
* `GET /items/{item_id}` -> the item's title and Semantic ID; `GET /health` -> status and sizes.

Bad requests are answered before they reach the model: malformed JSON, a missing or empty history, `top_k` out
of range (422, FastAPI's validation message) and item ids outside the catalog (422 naming them, with the hint
`skip_unknown`); an unknown item id in `/items/` is a 404. A 500 would be a bug of the server, never the
answer to a bad request.

Request batching (`RequestBatcher`): the model ranks a batch of users in one beam search about as fast as one
user, so requests that arrive within `max_wait_ms` of each other (up to `max_batch` histories) are ranked
together in one call, on one worker thread (the event loop stays free to accept requests). Requests are grouped
by their beam width `max(num_beams, top_k)`, so each one's ranking is exactly what `S2GRRecommender.recommend`
gives it alone. `max_batch=1` turns batching off.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime, and the request
# models are local to `create_app` (their bounds are the server's settings).
import asyncio
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .beam_search_s2gr import DEFAULT_NUM_BEAMS, DEFAULT_TOP_K
from .errors import InputError
from .recommender import S2GRRecommender

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_WAIT_MS = 5.0
DEFAULT_MAX_TOP_K = 100
MAX_HISTORIES_PER_REQUEST = 1000


@dataclass
class _Pending:
    histories: list[list[str]]
    top_k: int
    exclude_seen: bool
    future: asyncio.Future = field(repr=False)
    epsilon: float = 0.0


class RequestBatcher:
    """Ranks the histories of concurrent requests together (see the module docstring)."""

    def __init__(
        self,
        recommender: S2GRRecommender,
        num_beams: int = DEFAULT_NUM_BEAMS,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or num_beams < 1:
            raise InputError(
                f"need max_batch >= 1, max_wait_ms >= 0, num_beams >= 1; got {max_batch}, {max_wait_ms}, {num_beams}"
            )
        self.recommender, self.num_beams = recommender, num_beams
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s2gr-rank")
        self.batches = 0  # beam searches run, for the benchmark and the tests

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=True)

    async def recommend(
        self, histories: list[list[str]], top_k: int, exclude_seen: bool, epsilon: float = 0.0
    ) -> list:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(histories, top_k, exclude_seen, future, epsilon))
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size, deadline = len(batch[0].histories), loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    pending = await asyncio.wait_for(self._queue.get(), max(deadline - loop.time(), 0))
                except TimeoutError:
                    break
                batch.append(pending)
                size += len(pending.histories)
            try:
                results = await loop.run_in_executor(self._executor, self._rank, batch)
            except Exception as error:  # handed to the waiting requests, which answer it
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            for pending, result in zip(batch, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)

    def _rank(self, batch: list[_Pending]) -> list[list]:
        """One beam search per beam width (and cold-item share) over the batch's histories; results split back
        per request."""
        groups: dict[tuple[int, float, int], list[int]] = defaultdict(list)
        for position, pending in enumerate(batch):
            # Cold items take floor(ε · top_k) slots: with ε > 0 only equal top_k may share a search.
            same_k = pending.top_k if pending.epsilon > 0 else 0
            groups[max(self.num_beams, pending.top_k), pending.epsilon, same_k].append(position)
        results: list[list] = [[] for _ in batch]
        for (_, epsilon, _), positions in groups.items():
            members = [batch[position] for position in positions]
            histories = [history for pending in members for history in pending.histories]
            exclude = [
                history if pending.exclude_seen else []
                for pending in members
                for history in pending.histories
            ]
            top_k = max(pending.top_k for pending in members)
            rankings = self.recommender.recommend(
                histories,
                top_k=top_k,
                num_beams=self.num_beams,
                exclude=exclude,
                return_scores=True,
                epsilon=epsilon,
            )
            self.batches += 1
            start = 0
            for position, pending in zip(positions, members, strict=True):
                stop = start + len(pending.histories)
                results[position] = [ranking[: pending.top_k] for ranking in rankings[start:stop]]
                start = stop
        return results


def create_app(
    recommender: S2GRRecommender,
    titles: dict[str, str] | None = None,
    num_beams: int = DEFAULT_NUM_BEAMS,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    max_top_k: int = DEFAULT_MAX_TOP_K,
    epsilon: float = 0.0,
):
    """The FastAPI application serving `recommender` (see the module docstring); `epsilon`: the default
    share of each top-k for cold items (`s2gr add-items`), which a request may change."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel, Field, model_validator

    tokenizer = recommender.tokenizer
    known = set(tokenizer.item_ids)
    titles = titles or {}
    batcher = RequestBatcher(recommender, num_beams, max_batch, max_wait_ms)
    default_epsilon = epsilon  # the request model's field of the same name would hide it in its class body

    class RecommendRequest(BaseModel):
        histories: list[list[str]] | None = Field(
            None, min_length=1, max_length=MAX_HISTORIES_PER_REQUEST, description="one history per user"
        )
        history: list[str] | None = Field(
            None, min_length=1, description="one user's history (instead of histories)"
        )
        top_k: int = Field(DEFAULT_TOP_K, ge=1, le=max_top_k, description="items per user")
        exclude_seen: bool = Field(True, description="never recommend an item of the user's own history")
        skip_unknown: bool = Field(
            False, description="drop item ids outside the catalog instead of refusing them"
        )
        epsilon: float = Field(
            default_epsilon, ge=0, le=1, description="largest share of the top-k for cold items (add-items)"
        )

        @model_validator(mode="after")
        def one_form(self):
            if (self.histories is None) == (self.history is None):
                raise ValueError("give either 'histories' (a list of histories) or 'history' (one), not both")
            for history in self.all_histories():
                if not history:
                    raise ValueError("every history needs at least one item id")
            return self

        def all_histories(self) -> list[list[str]]:
            return self.histories if self.histories is not None else [self.history]

    class Recommendation(BaseModel):
        item_id: str
        score: float = Field(description="the beam's log-probability")
        title: str | None = None

    class RecommendResponse(BaseModel):
        recommendations: list[list[Recommendation]]
        skipped_unknown: list[int] = Field(description="item ids dropped from each history (skip_unknown)")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="S2GR recommendations",
        description="Next-item recommendations by an S2GR model (generative retrieval over Semantic IDs).",
        lifespan=lifespan,
    )
    app.state.batcher = batcher

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(request: RecommendRequest) -> RecommendResponse:
        histories, skipped = [], []
        for row, history in enumerate(request.all_histories()):
            kept = [item for item in history if item in known]
            if len(kept) < len(history) and not request.skip_unknown:
                unknown = sorted({item for item in history if item not in known})
                raise HTTPException(
                    422,
                    f"history {row}: item id(s) {unknown[:10]} are not in the model's catalog of {len(known):,} "
                    "items; send ids as in the training data, or set skip_unknown to drop them.",
                )
            if not kept:
                raise HTTPException(
                    422, f"history {row}: no item of the model's catalog is left to rank from."
                )
            histories.append(kept)
            skipped.append(len(history) - len(kept))
        rankings = await batcher.recommend(histories, request.top_k, request.exclude_seen, request.epsilon)
        recommendations = [
            [Recommendation(item_id=item, score=score, title=titles.get(item)) for item, score in ranking]
            for ranking in rankings
        ]
        return RecommendResponse(recommendations=recommendations, skipped_unknown=skipped)

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict:
        if item_id not in known:
            raise HTTPException(
                404, f"item id {item_id!r} is not in the model's catalog of {len(known):,} items"
            )
        return {
            "item_id": item_id,
            "title": titles.get(item_id),
            "semantic_id": list(map(int, tokenizer.item_to_sid(item_id))),
        }

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "items": len(known),
            "cold_items": len(recommender.cold_items),
            "num_beams": num_beams,
            "max_batch": max_batch,
            "max_wait_ms": max_wait_ms,
            "context_items": recommender.model.config.context_items,
            "beam_searches": batcher.batches,
        }

    return app


def serve(
    model: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    **settings,
) -> None:
    """Load the model folder and serve it until interrupted (`s2gr serve`)."""
    import uvicorn

    from .checkpoint import resolve_model_folder
    from .titles import load_titles

    recommender = S2GRRecommender.from_pretrained(model, device=device)  # with the folder's cold items
    app = create_app(recommender, load_titles(resolve_model_folder(model)), **settings)
    uvicorn.run(app, host=host, port=port, log_level="info")
