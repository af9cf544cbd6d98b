"""``pointsym data``: the data root and which data sets are present; the demo's data stage."""
