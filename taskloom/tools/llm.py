"""The `llm` kind: a step that runs on the large model, through the same re-ask loop."""

from __future__ import annotations

import json

from taskloom.chat import ChatModel, Message
from taskloom.chat.openai import extract_json
from taskloom.errors import TaskInputError
from taskloom.step import StepJob
from taskloom.tools.base import Outcome, Usage, ask_until_valid, check_schema

MAX_TOKENS = 1024


def run_llm_step(job: StepJob, model: ChatModel, *, output_retries: int = 2) -> Outcome:
    """Run a `kind: llm` step: `instruction` (or `prompt`) with `context`, optional `output`.

    Raises:
        TaskInputError: no instruction.
        OutputValidationError: the reply kept failing the output schema.
    """
    instruction = job.inputs.get("instruction", job.inputs.get("prompt"))
    if not isinstance(instruction, str) or not instruction.strip():
        raise TaskInputError(
            "llm input instruction: field required (inputs of llm: instruction, context)",
            step_id=job.step_id,
        )
    context = job.inputs.get("context")
    system = "Do what the instruction asks, briefly, using the context."
    if job.output is not None:
        system += " Reply with JSON matching this schema: " + json.dumps(job.output)
    user = f"Instruction: {instruction}"
    if context is not None:
        user += "\nContext:\n" + json.dumps(context, ensure_ascii=False)
    messages: list[Message] = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
    ]
    usage = Usage()
    if job.output is None:
        completion = model.complete(messages, max_tokens=MAX_TOKENS)
        usage.add(completion)
        return Outcome(value={"text": completion.text}, usage=usage)
    value = ask_until_valid(
        model,
        "llm",
        messages,
        constraint=job.output,
        validator=check_schema(job.output, "llm"),
        max_tokens=MAX_TOKENS,
        output_retries=output_retries,
        usage=usage,
        parse=lambda text: json.loads(extract_json(text)),
    )
    return Outcome(value=value, usage=usage)
