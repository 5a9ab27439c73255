"""Span ingestion: Kafka message -> LLMSpan / EvalResult (decode, normalise, assemble)."""
