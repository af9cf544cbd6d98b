"""Papers 001/003: concentric spherical networks; rotated-shape classification
(``pointsym csnn-shapes``, module ``shapes``)."""
