"""Paper 004: neural structure fields (``pointsym nesf-train`` / ``nesf-eval``)."""
