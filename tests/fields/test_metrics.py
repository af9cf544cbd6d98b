"""NeSF metrics on hand-made reconstructions (values worked out by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from pointsym.fields import reconstruction_metrics, structure_errors

TRUE = (np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]), np.array([8, 8, 22]))


def test_perfect_reconstruction():
    m = reconstruction_metrics([TRUE], [TRUE])
    assert m["atom_count_error_pct"] == 0.0
    assert m["position_error_actual"] == 0.0 and m["position_error_detected"] == 0.0
    assert m["species_error_actual_pct"] == 0.0 and m["species_error_detected_pct"] == 0.0
    assert m["n_true_atoms"] == 3 and m["n_detected_atoms"] == 3


def test_missing_atom():
    pred = (TRUE[0][:2] + [0.1, 0.0, 0.0], TRUE[1][:2])  # Ti atom missing, the others 0.1 Å off
    e = structure_errors(*TRUE, *pred)
    assert not e["count_correct"]
    # the missing atom's nearest detected atom is (0.1, 0, 0): distance sqrt(0.1^2 + 3^2)
    np.testing.assert_allclose(e["actual_distance"], [0.1, 0.1, np.hypot(0.1, 3.0)])
    np.testing.assert_allclose(e["detected_distance"], [0.1, 0.1])
    assert e["actual_species_wrong"].tolist() == [False, False, True]
    m = reconstruction_metrics([TRUE], [pred])
    assert m["atom_count_error_pct"] == 100.0
    assert m["position_error_actual"] == pytest.approx((0.2 + np.hypot(0.1, 3.0)) / 3)
    assert m["position_error_detected"] == pytest.approx(0.1)
    assert m["species_error_actual_pct"] == pytest.approx(100 / 3)
    assert m["species_error_detected_pct"] == 0.0


def test_extra_atom():
    pred = (np.vstack([TRUE[0], [2.3, 0.0, 0.0]]), np.r_[TRUE[1], 22])  # extra Ti 0.3 Å from the 2nd O
    m = reconstruction_metrics([TRUE], [pred])
    assert m["atom_count_error_pct"] == 100.0
    assert m["position_error_actual"] == 0.0
    assert m["position_error_detected"] == pytest.approx(0.3 / 4)
    assert m["species_error_actual_pct"] == 0.0  # every true atom has itself as nearest detection
    assert m["species_error_detected_pct"] == pytest.approx(25.0)  # the extra Ti sits next to an O


def test_wrong_species():
    pred = (TRUE[0].copy(), np.array([8, 26, 22]))
    m = reconstruction_metrics([TRUE], [pred])
    assert m["atom_count_error_pct"] == 0.0 and m["position_error_actual"] == 0.0
    assert m["species_error_actual_pct"] == pytest.approx(100 / 3)
    assert m["species_error_detected_pct"] == pytest.approx(100 / 3)


def test_nothing_detected_gives_infinite_actual_error():
    m = reconstruction_metrics([TRUE, TRUE], [(np.zeros((0, 3)), np.zeros(0, int)), TRUE])
    assert m["atom_count_error_pct"] == 50.0
    assert m["position_error_actual"] == np.inf
    assert m["position_error_actual_nonempty"] == 0.0
    assert m["n_empty_reconstructions"] == 1
    assert m["species_error_actual_pct"] == 50.0  # the 3 undetected atoms count as wrong
    assert m["position_error_detected"] == 0.0


def test_atoms_are_pooled_over_structures():
    small = (np.zeros((1, 3)), np.array([1]))
    small_pred = (np.array([[0.5, 0.0, 0.0]]), np.array([1]))
    m = reconstruction_metrics([small, TRUE], [small_pred, TRUE])
    # pooled over 4 atoms: 0.5 / 4, not the mean of per-structure means (0.25)
    assert m["position_error_actual"] == pytest.approx(0.125)


def test_lattice_errors_in_angstrom_and_degrees():
    lengths = np.array([[3.0, 4.0, 5.0]])
    angles = np.full((1, 3), np.pi / 2)
    m = reconstruction_metrics([TRUE], [TRUE], true_lattice=(lengths, angles),
                               pred_lattice=(lengths + [0.3, 0.0, 0.0], angles + np.radians([3.0, 0.0, 0.0])))
    assert m["lengths_mae"] == pytest.approx(0.1)
    assert m["angles_mae_deg"] == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="empty"):
        structure_errors(np.zeros((0, 3)), np.zeros(0, int), *TRUE)
    with pytest.raises(ValueError, match="species labels"):
        structure_errors(TRUE[0], TRUE[1][:2], *TRUE)
    with pytest.raises(ValueError, match="NaN"):
        structure_errors(TRUE[0] * np.nan, TRUE[1], *TRUE)
    with pytest.raises(ValueError, match="pairs"):
        reconstruction_metrics([TRUE, TRUE], [TRUE])
    with pytest.raises(TypeError, match="positions, numbers"):
        reconstruction_metrics([TRUE], ["nope"])
