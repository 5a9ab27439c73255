"""Which attributes hold prompt / completion content (dropped at decode) and user-id hashing.

Content may hold personal data; it is dropped before anything else sees the span, so it cannot
reach operator state, alerts or logs. The list covers the OTel GenAI conventions (old and new),
OpenLLMetry / Traceloop and OpenInference.
"""

from __future__ import annotations

import hashlib
import hmac

_CONTENT_EXACT = frozenset({
    # OTel GenAI semantic conventions
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.tool.definitions", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
    "gen_ai.evaluation.explanation", "gen_ai.headers", "gen_ai.prompt", "gen_ai.completion",
    "gen_ai.embeddings.dimension.values",
    # OpenInference
    "input.value", "output.value", "llm.invocation_parameters_messages",
    "llm.prompt_template.template", "llm.prompt_template.variables", "llm.tools",
    # OpenLLMetry / Traceloop
    "traceloop.entity.input", "traceloop.entity.output", "llm.request.functions",
    "traceloop.prompt.template",
})

_CONTENT_PREFIXES = (
    "gen_ai.prompt.", "gen_ai.completion.",            # OpenLLMetry indexed messages
    "llm.input_messages.", "llm.output_messages.",     # OpenInference flattened messages
    "llm.prompts.", "embedding.embeddings.", "embedding.text",
    "retrieval.documents.", "reranker.input_documents.", "reranker.output_documents.",
    "reranker.query", "message.content", "gen_ai.request.headers.", "gen_ai.response.headers.",
    "http.request.header.", "http.response.header.",  # may carry auth tokens
    "traceloop.prompt.template_variables.",
)


# Metadata that lives under a content prefix but holds no text: OpenLLMetry's per-choice
# `gen_ai.completion.<i>.finish_reason` and prompt template versions.
_METADATA_SUFFIXES = (".finish_reason", ".role")
_METADATA_PREFIXES = ("gen_ai.prompt.template.",)


def is_content_key(key: str) -> bool:
    """Whether an attribute key may hold prompt/completion text or secrets (then it is dropped)."""
    if key in _CONTENT_EXACT:
        return True
    if not key.startswith(_CONTENT_PREFIXES):
        return False
    return not (key.endswith(_METADATA_SUFFIXES) or key.startswith(_METADATA_PREFIXES))


def hash_user_id(user_id: str, salt: bytes) -> str:
    """A stable pseudonym for a user id: keyed BLAKE2b, 16 hex chars (enough to count users)."""
    return hmac.new(salt, user_id.encode(), hashlib.blake2b).hexdigest()[:16]
