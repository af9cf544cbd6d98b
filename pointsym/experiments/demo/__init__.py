"""``pointsym demo``: every pipeline on the embedded data, one HTML report."""
