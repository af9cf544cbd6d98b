"""Atom-centred density-of-states models on the carbon-allotrope set (``pointsym csnn-dos train`` / ``eval``).

The CSNN DOS model of spec ``csnn.md`` section 5 and, through the same training loop, other
models (:mod:`.adapters`: one :class:`~.adapters.DOSAdapter` per model kind).
"""
