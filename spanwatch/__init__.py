"""spanwatch: streaming anomaly detection and tiered alerting for LLM applications."""
