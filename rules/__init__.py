"""Rules: alerts.toml (schema, validation), rule evaluation and the alert lifecycle."""
