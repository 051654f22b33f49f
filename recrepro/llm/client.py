"""Structured completions and embeddings through LiteLLM, for any provider, cached and budgeted.

- Requests run concurrently (``max_concurrency``); rate limits, timeouts, connection errors and server errors
  are retried with exponential backoff. One that still fails stops the stage with :class:`TransportError`
  naming the cause (the answers received so far are cached, so a rerun resumes); authentication and
  bad-request errors stop it at once. A transport failure never becomes a fallback text.
- Every answer is parsed and validated with the template's pydantic schema. Only valid answers are cached; an
  invalid one goes to a separate failure log (raw text and the validation errors field by field), is followed
  by a bounded number of correction turns, and is asked again on the next run.
- Every request is looked up in the content-addressed cache first: a rerun with nothing changed makes no call.
- Spending is tracked with LiteLLM's cost map (or the per-token prices given in the settings); once
  ``max_budget_usd`` is reached no new request starts, the ones in flight finish and are cached, and
  :class:`BudgetExceeded` is raised. A budget cannot be enforced for a model without a price, so that is an
  error before any request; calls without a price are counted as unpriced, never as free.
- API keys are read from the environment at call time and never stored or logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import recrepro  # noqa: F401  (LITELLM_LOCAL_MODEL_COST_MAP before litellm is imported)
from recrepro.llm.cache import FailureLog, ResponseCache, decode_vector, encode_vector, request_key
from recrepro.llm.local import EMBEDDING_PRECISION, is_local, register_local_provider
from recrepro.llm.prompts import PromptTemplate
from recrepro.progress import progress_bar

log = logging.getLogger(__name__)


class LLMSettings(BaseModel):
    """How to reach the models. Secrets are named (``api_key_env``), never given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "recrepro-local/smollm2-135m-instruct"
    api_base: str | None = None
    api_key_env: str | None = Field(None, description="environment variable holding the API key, if any")
    embedding_model: str = "recrepro-local/all-minilm-l6-v2"
    embedding_api_base: str | None = None
    temperature: float = 0.0
    max_concurrency: int = Field(8, gt=0)
    request_timeout_s: float = Field(120.0, gt=0)
    transport_retries: int = Field(4, ge=0)
    backoff_s: float = Field(2.0, ge=0)
    format_retries: int = Field(2, ge=0)
    max_budget_usd: float | None = Field(None, ge=0)
    input_cost_per_token: float | None = Field(None, ge=0, description="USD; for a model LiteLLM has no price for")
    output_cost_per_token: float | None = Field(None, ge=0, description="USD; for a model LiteLLM has no price for")
    embedding_cost_per_token: float | None = Field(None, ge=0, description="USD; for an unpriced embedding model")
    embedding_batch_size: int = Field(64, gt=0)


class BudgetExceeded(RuntimeError):
    """The configured budget is spent; paid answers are cached and the stage stopped before writing outputs."""


class ProviderError(RuntimeError):
    """The provider refused the request for a reason retrying cannot fix (credentials, bad request)."""


class TransportError(RuntimeError):
    """A request still failed in transport (timeout, connection, rate limit, server error) after its retries."""


class UnpricedModel(ValueError):
    """A spending limit is set for a model whose price is unknown."""


@dataclass
class TextRequest:
    entity: str
    template: PromptTemplate
    messages: list[dict[str, str]]


@dataclass
class TextResult:
    entity: str
    status: Literal["ok", "invalid"]
    answer: dict[str, str] | None = None
    raw: str | None = None
    error: str | None = None


@dataclass
class Usage:
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    seconds: float = 0.0
    retries: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class InvalidAnswer(ValueError):
    """An answer that is not a JSON object of the template's schema; ``errors`` lists the problems by field."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['error']}" if e["field"] else e["error"] for e in errors))


def parse_answer(content: str, template: PromptTemplate) -> dict[str, str]:
    """The JSON object in ``content`` (code fences and surrounding prose tolerated), validated by the schema.

    Raises:
        InvalidAnswer: with every problem, field by field.
    """
    match = re.search(r"\{.*\}", content or "", flags=re.DOTALL)
    if not match:
        raise InvalidAnswer([{"field": None, "error": "no JSON object in the answer"}])
    try:
        parsed = json.loads(match.group(0))
    except json.JSONDecodeError as err:
        raise InvalidAnswer([{"field": None, "error": f"not valid JSON ({err})"}]) from None
    try:
        return template.schema.model_validate(parsed).model_dump()
    except ValidationError as err:
        raise InvalidAnswer(
            [{"field": ".".join(map(str, e["loc"])) or None, "error": e["msg"]} for e in err.errors()]
        ) from None


def _transport_cause(err: Exception, timeout_s: float) -> str:
    """A transport failure in words: what happened, not the provider's full message."""
    import litellm

    if isinstance(err, litellm.Timeout):
        return f"timeout after {timeout_s:g} s"
    if isinstance(err, litellm.RateLimitError):
        return "rate limited (HTTP 429)"
    if isinstance(err, litellm.APIConnectionError):
        return f"connection error ({str(err).splitlines()[0][:160]})"
    status = getattr(err, "status_code", None)
    return f"server error (HTTP {status})" if status else f"{type(err).__name__}"


def _transient_errors() -> tuple[type[Exception], ...]:
    import litellm

    return (
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.APIConnectionError,
        litellm.ServiceUnavailableError,
        litellm.InternalServerError,
        litellm.BadGatewayError,
    )


def _fatal_errors() -> tuple[type[Exception], ...]:
    import litellm

    return (litellm.AuthenticationError, litellm.BadRequestError, litellm.NotFoundError, litellm.PermissionDeniedError)


class LLMClient:
    """Runs batches of structured completions and embeddings against one configured provider."""

    def __init__(self, settings: LLMSettings, cache: ResponseCache, progress: bool | None = None) -> None:
        register_local_provider()
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):  # one INFO line per request otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        self.settings = settings
        self.cache = cache
        self.failures = FailureLog(cache.path.with_name("failures.jsonl"))  # beside the cache
        self.usage = Usage()
        self.progress = progress
        self._halt: Exception | None = None  # set on budget exhaustion or a fatal provider error

    # -- prices ----------------------------------------------------------------------------------------------

    def _custom_prices(self, model: str) -> tuple[float, float] | None:
        s = self.settings
        if model == s.embedding_model and s.embedding_cost_per_token is not None:
            return s.embedding_cost_per_token, 0.0
        if model == s.model and s.input_cost_per_token is not None and s.output_cost_per_token is not None:
            return s.input_cost_per_token, s.output_cost_per_token
        return None

    def _priced(self, model: str) -> bool:
        """Whether the cost of ``model``'s calls is known (a local model, configured prices, LiteLLM's map)."""
        import litellm

        if is_local(model) or self._custom_prices(model) is not None:
            return True
        try:
            info = litellm.get_model_info(model)
        except Exception:  # not in LiteLLM's price map
            return False
        return info.get("input_cost_per_token") is not None

    def require_prices(self, model: str) -> None:
        """Refuse to start when a spending limit is set but ``model``'s calls cannot be priced."""
        if self.settings.max_budget_usd is None or self._priced(model):
            return
        keys = (
            "llm.embedding_cost_per_token"
            if model == self.settings.embedding_model
            else "llm.input_cost_per_token and llm.output_cost_per_token"
        )
        raise UnpricedModel(
            f"llm.max_budget_usd is {self.settings.max_budget_usd:g} but LiteLLM's price map has no price for "
            f"{model!r}, so the spending limit cannot be enforced. Give its prices in USD per token ({keys}), or "
            "disable the limit with llm.max_budget_usd: null (e.g. for a local server that costs nothing)."
        )

    # -- requests ------------------------------------------------------------------------------------------

    def _api_key(self, api_base: str | None) -> str | None:
        name = self.settings.api_key_env
        if name:
            if not os.environ.get(name):
                raise ProviderError(f"environment variable {name} (llm.api_key_env) is not set")
            return os.environ[name]
        return "no-key" if api_base else None  # OpenAI-compatible local servers need some key

    def _scrub(self, text: str) -> str:
        """``text`` with the API key's value masked (provider errors sometimes quote the key)."""
        key = os.environ.get(self.settings.api_key_env or "", "")
        return text.replace(key, "***") if len(key) >= 4 else text

    def response_format(self, template: PromptTemplate) -> dict[str, Any]:
        return template.response_format(field_hints=is_local(self.settings.model))

    def completion_key(self, messages: list[dict[str, str]], template: PromptTemplate) -> str:
        return request_key(
            {
                "kind": "completion",
                "model": self.settings.model,
                "messages": messages,
                "response_format": self.response_format(template),
                "prompt": template.name,
                "prompt_version": template.version,
                "temperature": self.settings.temperature,
                "max_tokens": template.max_tokens,
            }
        )

    async def _with_retries(self, call, what: str):
        transient, fatal = _transient_errors(), _fatal_errors()
        for attempt in range(self.settings.transport_retries + 1):
            if self._halt is not None:
                raise type(self._halt)(str(self._halt))
            try:
                return await call()
            except fatal as err:
                self._halt = ProviderError(self._scrub(f"{what}: {type(err).__name__}: {err}"))
                raise self._halt from None
            except transient as err:
                name = type(err).__name__
                self.usage.retries[name] = self.usage.retries.get(name, 0) + 1
                if attempt == self.settings.transport_retries:
                    cause = _transport_cause(err, self.settings.request_timeout_s)
                    attempts = self.settings.transport_retries + 1
                    self._halt = TransportError(
                        self._scrub(
                            f"{what}: {cause}, {attempts} attempts (llm.transport_retries="
                            f"{self.settings.transport_retries}). The answers received so far are cached: rerun "
                            "to resume once the provider is reachable."
                        )
                    )
                    raise self._halt from None
                delay = self.settings.backoff_s * 2**attempt
                log.warning(
                    "%s: %s, retrying in %.1fs (%d/%d)", what, name, delay, attempt + 1, self.settings.transport_retries
                )
                await asyncio.sleep(delay)

    def _budget_message(self) -> str:
        return (
            f"budget of ${self.settings.max_budget_usd:.4f} reached (spent ${self.usage.cost_usd:.4f}); "
            "paid answers are cached, so raising llm.max_budget_usd and rerunning resumes without paying twice"
        )

    def _account(self, response: Any, started: float, model: str) -> tuple[dict[str, int], float | None]:
        import litellm

        usage = getattr(response, "usage", None)
        tokens = {
            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        }
        cost: float | None
        prices = self._custom_prices(model)
        if is_local(model):
            cost = 0.0
        elif prices is not None:
            cost = tokens["prompt_tokens"] * prices[0] + tokens["completion_tokens"] * prices[1]
        elif not self._priced(model):  # priced by the configured model, not by the name a server answers with
            cost = None
        else:
            try:
                cost = float(litellm.completion_cost(completion_response=response, model=model))
            except Exception:  # a price LiteLLM cannot apply to this response
                cost = None
        self.usage.calls += 1
        self.usage.prompt_tokens += tokens["prompt_tokens"]
        self.usage.completion_tokens += tokens["completion_tokens"]
        self.usage.seconds += time.perf_counter() - started
        if cost is None:
            self.usage.unpriced_calls += 1
        else:
            self.usage.cost_usd += cost
        budget = self.settings.max_budget_usd
        if budget is not None and self.usage.cost_usd >= budget and self._halt is None:
            self._halt = BudgetExceeded(self._budget_message())
        return tokens, cost

    async def _complete_once(self, messages: list[dict[str, str]], request: TextRequest) -> dict[str, Any]:
        """One request: a cached valid answer, or a new call. A valid answer is cached; an invalid one is logged
        as a failure (never cached, so the next run asks again)."""
        key = self.completion_key(messages, request.template)
        if (record := self.cache.get(key)) is not None and record.get("status") == "ok":
            self.usage.cached += 1
            return record
        import litellm

        settings = self.settings
        started = time.perf_counter()
        response = await self._with_retries(
            lambda: litellm.acompletion(
                model=settings.model,
                messages=messages,
                response_format=self.response_format(request.template),
                temperature=settings.temperature,
                max_tokens=request.template.max_tokens,
                timeout=settings.request_timeout_s,
                api_base=settings.api_base,
                api_key=self._api_key(settings.api_base),
                num_retries=0,
                max_retries=0,
                drop_params=True,
            ),
            f"{request.template.name} {request.entity}",
        )
        content = response.choices[0].message.content or ""
        tokens, cost = self._account(response, started, settings.model)
        try:
            answer, errors = parse_answer(content, request.template), []
        except InvalidAnswer as err:
            answer, errors = None, err.errors
        record = {
            "key": key,
            "kind": "completion",
            "model": settings.model,
            "prompt": request.template.name,
            "prompt_version": request.template.version,
            "entity": request.entity,
            "status": "ok" if answer else "invalid",
            "content": content,
            "answer": answer,
            "usage": tokens,
            "cost_usd": cost,
            "latency_s": round(time.perf_counter() - started, 3),
        }
        if answer is None:
            record["errors"] = errors
            record["error"] = str(InvalidAnswer(errors))[:300]
            self.failures.put(record)
        else:
            self.cache.put(record)
        return record

    @staticmethod
    def _correction(
        messages: list[dict[str, str]], record: dict[str, Any], template: PromptTemplate
    ) -> list[dict[str, str]]:
        """The conversation extended by an invalid answer and a request to answer again."""
        fields = ", ".join(f'"{name}"' for name in template.schema.model_fields)
        return messages + [
            {"role": "assistant", "content": record["content"]},
            {
                "role": "user",
                "content": f"That answer is not valid ({record['error']}). Reply again with only "
                f"a JSON object with the keys {fields}, each a non-empty string.",
            },
        ]

    async def _complete(self, request: TextRequest) -> TextResult:
        messages = list(request.messages)
        record: dict[str, Any] = {}
        for _ in range(self.settings.format_retries + 1):
            record = await self._complete_once(messages, request)
            if record["status"] == "ok":
                return TextResult(request.entity, "ok", answer=record["answer"], raw=record["content"])
            messages = self._correction(messages, record, request.template)
        return TextResult(request.entity, "invalid", raw=record["content"], error=record["error"])

    def cached_keys(self, request: TextRequest) -> list[str]:
        """Key of the cached valid answer to ``request`` (following its correction turns through the failure log),
        without calls; empty if it has none."""
        messages = list(request.messages)
        for _ in range(self.settings.format_retries + 1):
            key = self.completion_key(messages, request.template)
            record = self.cache.get(key)
            if record is not None and record.get("status") == "ok":
                return [key]
            failure = self.failures.get(key)
            if failure is None:
                return []
            messages = self._correction(messages, failure, request.template)
        return []

    async def complete(self, requests: list[TextRequest], desc: str = "LLM") -> list[TextResult]:
        """Run ``requests`` concurrently; results are in request order. Identical requests (same messages and
        template) are sent once and share the answer.

        Raises:
            BudgetExceeded: after the in-flight requests have finished and been cached.
            ProviderError: credentials or request rejected by the provider.
            TransportError: a request failed in transport after its retries (after the in-flight ones finished).
            UnpricedModel: a spending limit is set and the model has no price.
        """
        self.require_prices(self.settings.model)
        first: dict[str, int] = {}
        for index, request in enumerate(requests):
            first.setdefault(self.completion_key(request.messages, request.template), index)
        unique = [requests[i] for i in sorted(first.values())]
        answers = dict(zip(sorted(first.values()), await self._complete_all(unique, desc)))
        results = []
        for request in requests:
            shared = answers[first[self.completion_key(request.messages, request.template)]]
            results.append(TextResult(request.entity, shared.status, shared.answer, shared.raw, shared.error))
        return results

    async def _complete_all(self, requests: list[TextRequest], desc: str) -> list[TextResult]:
        semaphore = asyncio.Semaphore(self.settings.max_concurrency)
        bar = progress_bar(len(requests), desc, "req", self.progress)

        async def run(request: TextRequest) -> TextResult:
            async with semaphore:
                result = await self._complete(request)
            bar.update(1)
            bar.set_postfix(
                calls=self.usage.calls, cached=self.usage.cached, cost=f"${self.usage.cost_usd:.4f}", refresh=False
            )
            return result

        try:
            results = await asyncio.gather(*(run(r) for r in requests), return_exceptions=True)
        finally:
            bar.close()
        for exc_type in (ProviderError, TransportError, BudgetExceeded):
            if any(isinstance(r, exc_type) for r in results):
                raise next(r for r in results if isinstance(r, exc_type))
        if failures := [r for r in results if isinstance(r, BaseException)]:
            raise failures[0]
        return list(results)

    # -- embeddings ----------------------------------------------------------------------------------------

    def embedding_key(self, text: str) -> str:
        payload = {"kind": "embedding", "model": self.settings.embedding_model, "input": text}
        if is_local(self.settings.embedding_model):
            payload["precision"] = EMBEDDING_PRECISION  # earlier float32 vectors are not reused
        return request_key(payload)

    async def embed(self, texts: list[str], desc: str = "embeddings") -> np.ndarray:
        """Embed ``texts`` (cached per text); returns a float32 ``[len(texts), dim]`` array."""
        import litellm

        settings = self.settings
        self.require_prices(settings.embedding_model)
        keys = [self.embedding_key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))
        text_of = dict(zip(keys, texts))
        self.usage.cached += len(keys) - len(missing)
        batches = [
            missing[i : i + settings.embedding_batch_size]
            for i in range(0, len(missing), settings.embedding_batch_size)
        ]
        semaphore = asyncio.Semaphore(settings.max_concurrency)
        bar = progress_bar(len(missing), desc, "text", self.progress)

        async def run(batch: list[str]) -> None:
            async with semaphore:
                started = time.perf_counter()
                response = await self._with_retries(
                    lambda: litellm.aembedding(
                        model=settings.embedding_model,
                        input=[text_of[k] for k in batch],
                        api_base=settings.embedding_api_base,
                        api_key=self._api_key(settings.embedding_api_base),
                        timeout=settings.request_timeout_s,
                        num_retries=0,
                        max_retries=0,
                    ),
                    f"embedding batch of {len(batch)}",
                )
                self._account(response, started, settings.embedding_model)
                rows = sorted(response.data, key=lambda d: d["index"])
                if len(rows) != len(batch):
                    raise ProviderError(f"embedding provider returned {len(rows)} vectors for {len(batch)} texts")
                for key, row in zip(batch, rows):
                    self.cache.put(
                        {
                            "key": key,
                            "kind": "embedding",
                            "model": settings.embedding_model,
                            "vector": encode_vector(row["embedding"]),
                            "dim": len(row["embedding"]),
                        }
                    )
                bar.update(len(batch))

        try:
            results = await asyncio.gather(*(run(b) for b in batches), return_exceptions=True)
        finally:
            bar.close()
        if failures := [r for r in results if isinstance(r, BaseException)]:
            raise next((r for r in failures if isinstance(r, (ProviderError, TransportError))), failures[0])
        return np.stack([decode_vector(self.cache.get(k)["vector"]) for k in keys]).astype(np.float32)
