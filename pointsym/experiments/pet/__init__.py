"""Paper 002: PET energies/forces with optional ECSE (``pointsym pet-train`` / ``pet-predict``)."""
