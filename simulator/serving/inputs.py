"""What one request is for a model that generates nothing: its input's length comes from the model.

A decoder's requests are prompts and outputs drawn from ``workload.prompt_tokens`` and
``output_tokens`` (defaults 512 and 128, chat-sized). An encoder, a ViT or a CNN runs one forward
per request and generates nothing, so those LLM defaults would be wrong:

- a ViT's input is its patches plus the class token, ``(image_size / patch_size)² + 1`` (197 for
  ViT-B/16 at 224², Dosovitskiy et al. 2021 §3.1); a CNN's is one image. Neither takes a length from
  the workload: ``workload.prompt_tokens`` set to anything else is an error.
- an encoder's input is a sequence of up to ``max_positions`` tokens: ``workload.prompt_tokens`` when
  the scenario sets it (no longer than ``max_positions``), else ``max_positions`` (512 for BERT), the
  length an engine built for static shapes pads every input to (BERT's tokenizer with
  ``padding="max_length"``; TensorRT and ONNX Runtime BERT engines built for one sequence length).
- ``workload.output_tokens`` does not apply to any of them (1 is accepted: one forward).
"""

from __future__ import annotations

import numpy as np

from ..errors import CapsimError
from ..models import ModelSpec
from ..scenario import Fixed, LengthDist, ServingScenario, Uniform

ONE = Fixed(dist="fixed", value=1)


def _longest(d: LengthDist) -> int | None:
    if isinstance(d, Fixed):
        return d.value
    if isinstance(d, Uniform):
        return d.high
    return getattr(d, "max", None)


def resolve_inputs(sc: ServingScenario, model: ModelSpec) -> ServingScenario:
    """The single-service scenario with its request lengths as ``model`` defines them (unchanged for a
    decoder); errors for lengths the model does not take. ``sc.workload``'s explicitly set keys are
    the user's."""
    if model.generative:
        return sc
    token_bounds = [k for k, v in sc.slo.model_dump().items() if v is not None and not k.startswith("e2e_")]
    if token_bounds:
        key = f"slo.{token_bounds[0]}"
        raise CapsimError(f"{key}: {model.name} is an {model.architecture} model and generates no tokens, so it has "
                          "no time to first token or per output token; bound its latency with slo.e2e_p99_s "
                          "(or e2e_p50_s, e2e_p90_s)")
    w = sc.workload
    given = w.model_fields_set
    if "output_tokens" in given and w.output_tokens != ONE:
        raise CapsimError(f"workload.output_tokens: {model.name} is an {model.architecture} model and generates no "
                          "tokens (one forward per request); remove workload.output_tokens")
    fixed = model.tokens_per_input
    if fixed is not None:
        if "prompt_tokens" in given and w.prompt_tokens != Fixed(dist="fixed", value=fixed):
            what = (f"{model.image_size}x{model.image_size} images in {model.patch_size}x{model.patch_size} "
                    f"patches: {fixed - 1} patches + the class token = {fixed} tokens" if model.architecture == "vit"
                    else f"one {model.image_size}x{model.image_size} image")
            raise CapsimError(f"workload.prompt_tokens: every input of {model.name} is {what}, set by the model; "
                              "remove workload.prompt_tokens")
        prompt: LengthDist = Fixed(dist="fixed", value=fixed)
    elif "prompt_tokens" in given:
        prompt = w.prompt_tokens
        top = _longest(prompt)
        if top is not None and top > model.max_positions:
            raise CapsimError(f"workload.prompt_tokens: {model.name} reads at most {model.max_positions} tokens "
                              f"(max_positions), got lengths up to {top}")
    else:
        prompt = Fixed(dist="fixed", value=model.max_positions)
    return sc.model_copy(update={"workload": w.model_copy(update={"prompt_tokens": prompt, "output_tokens": ONE})})


def fixed_lengths(model: ModelSpec, prompt: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-request lengths for ``model``: a ViT's or CNN's fixed input and one forward (no output) for
    every non-generative model; a decoder's as drawn."""
    if model.generative:
        return prompt, output
    fixed = model.tokens_per_input
    p = np.full(len(prompt), fixed, dtype=np.int64) if fixed is not None else prompt
    return p, np.ones(len(output), dtype=np.int64)
