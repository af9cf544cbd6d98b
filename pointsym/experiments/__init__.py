"""The papers' pipelines as importable functions and CLI sub-commands, plus the demo."""
