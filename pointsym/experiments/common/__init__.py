"""Shared plumbing of the experiment sub-commands: option groups, progress, results, plots, report."""
