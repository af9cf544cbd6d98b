"""The one model contract: ``hypers`` rebuilds, ``save``/``from_checkpoint`` round-trip, clear refusals.

Every model class (PET, NeighborMLP, ECSE, CSNNClassifier, PointNet, NeSF and the pixel-SOAP
networks) is checked in float64 at small sizes; legacy files (Trainer checkpoints, the old
NeSF export including the committed ``results/nesf/nesf_lim_l6.pt``, version-1 pixel-SOAP
bundles) must still load with identical outputs.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pointsym.core import MODEL_FORMAT, MODEL_FORMAT_VERSION, CheckpointError, load_model
from pointsym.experiments.pixel_soap.models import DeepAutoencoder, LinearAutoencoder, PatchCNN, PixelMLP
from pointsym.fields import NeSF, load_nesf, save_nesf
from pointsym.models import CSNNDOS, PET, PETDOS, AtomwiseDOSMLP, CSNNClassifier, PointNet
from pointsym.symmetrize import ECSE, NeighborMLP

ROOT = Path(__file__).resolve().parents[2]
COMMITTED_NESF = ROOT / "results" / "nesf" / "nesf_lim_l6.pt"

METHANE = torch.tensor([[0.0, 0.0, 0.0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63],
                        [0.63, -0.63, -0.63]], dtype=torch.float64)
METHANE_Z = torch.tensor([6, 1, 1, 1, 1])


def _tiny_pet(**kw):
    args = dict(r_cut=3.0, d_model=8, n_gnn_layers=1, n_trans_layers=1, n_heads=2, dim_feedforward=16,
                head_hidden=8)
    args.update(kw)
    return PET([1, 6], **args)


def _structure_inputs():
    g = torch.Generator().manual_seed(1)
    return (METHANE + 0.05 * torch.randn(5, 3, generator=g, dtype=torch.float64), METHANE_Z)


def _nesf_inputs():
    g = torch.Generator().manual_seed(2)
    pos = torch.rand(6, 3, generator=g, dtype=torch.float64) * 4
    species = torch.tensor([0, 1, 2, 0, 1, 2])
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    lat = (torch.full((2, 3), 3.9, dtype=torch.float64), torch.full((2, 3), 1.5708, dtype=torch.float64))
    queries = torch.rand(7, 3, generator=g, dtype=torch.float64) * 4
    return (pos, species, batch, *lat, queries, torch.tensor([0, 0, 0, 1, 1, 1, 1]))


def _points(n_batch=2, n_points=24):
    g = torch.Generator().manual_seed(3)
    return (torch.randn(n_batch, n_points, 3, generator=g, dtype=torch.float64),)


def _rows(width):
    g = torch.Generator().manual_seed(4)
    return (torch.randn(3, width, generator=g, dtype=torch.float64),)


def _patches(patch):
    g = torch.Generator().manual_seed(5)
    return (torch.rand(2, 1, patch, patch, generator=g, dtype=torch.float64),)


def _carbon_frames():
    """Two small carbon structures: a rattled periodic diamond cell and an isolated ring."""
    from ase.build import bulk, molecule

    diamond = bulk("C", "diamond", a=3.567, cubic=True)
    diamond.rattle(0.05, seed=6)
    benzene = molecule("C6H6")
    ring = benzene[[i for i, z in enumerate(benzene.numbers) if z == 6]]
    ring.rattle(0.05, seed=7)
    return [diamond, ring]


def _carbon_inputs():
    from pointsym.structures import batch_structures

    sb = batch_structures(_carbon_frames(), dtype=torch.float64)
    return (sb.positions, sb.numbers, sb.cell, sb.pbc, sb.batch)


def _csnn_dos_inputs():
    """Fingerprint grids (level 1, 4 bins) of the carbon structures, their structure index and count."""
    from pointsym.nn import atomic_environment_grid

    positions, numbers, cell, pbc, batch = _carbon_inputs()
    grid = atomic_environment_grid(positions, numbers, cell, pbc, batch, level=1, n_bins=4, r_min=1.0, r_cut=3.5)
    return (grid, batch, 2)


def _soap_dos_inputs():
    """SOAP features (n_max 2, l_max 2, the AtomwiseDOSMLP case's settings) of the carbon structures and batch."""
    from pointsym.models.dos_heads import SOAPFeaturizer

    feats = SOAPFeaturizer(("C",), r_cut=3.5, n_max=2, l_max=2).featurize(_carbon_frames())
    batch = torch.cat([torch.full((len(f),), k, dtype=torch.long) for k, f in enumerate(feats)])
    return (torch.as_tensor(np.concatenate(feats), dtype=torch.float64), batch, 2)


# name -> (build(), inputs(), rebuild(hypers, original) -> untrained model of the same architecture)
CASES = {
    "PET": (lambda: _tiny_pet(), _structure_inputs, None),
    "NeighborMLP": (lambda: NeighborMLP(3.0, hidden=8, n_features=4, species=[1, 6]), _structure_inputs, None),
    "ECSE[NeighborMLP]": (
        lambda: ECSE(NeighborMLP(3.0, hidden=8, n_features=4), r_cut=3.0, outputs=NeighborMLP.OUTPUTS,
                     n_prunings=2, max_frames=500),
        _structure_inputs,
        lambda h, m: ECSE(NeighborMLP(**m.model.hypers), **h),
    ),
    "ECSE[PET, aux PET]": (
        lambda: ECSE(_tiny_pet(), r_cut=3.0, aux_model=_tiny_pet(use_only_length=True), reflections=False),
        _structure_inputs,
        lambda h, m: ECSE(PET(**m.model.hypers), aux_model=PET(**m.aux_model.hypers), **h),
    ),
    "CSNNClassifier": (
        lambda: CSNNClassifier(level=1, n_shells=2, n_channels=2, n_classes=3, base_width=4, hidden=(8,)),
        _points, None,
    ),
    "PointNet": (
        lambda: PointNet(3, widths=(8, 8, 16), head=(8,), tnet_widths=(8, 16), tnet_head=(8,),
                         feature_transform=True),
        _points, None,
    ),
    "NeSF": (
        lambda: NeSF(species=(8, 22, 38), latent_dim=6, box_min=(0, 0, 0), box_max=(4, 4, 4),
                     position_channels=(12, 8), species_channels=(8,),
                     encoder_kwargs={"position_channels": [8, 8], "species_channels": [8], "pooled_dim": 8,
                                     "head_channels": [8]}),
        _nesf_inputs, None,
    ),
    "PixelMLP": (lambda: PixelMLP(10, hidden=(8, 6), n_classes=3), lambda: _rows(10), None),
    "LinearAutoencoder": (lambda: LinearAutoencoder(10, 3), lambda: _rows(10), None),
    "DeepAutoencoder": (lambda: DeepAutoencoder(10, 3, h_m=2), lambda: _rows(10), None),
    "PatchCNN": (lambda: PatchCNN(patch=9, n_classes=3, channels=(4, 4)), lambda: _patches(9), None),
    "CSNNDOS": (
        lambda: CSNNDOS(level=1, n_bins=4, n_energies=20, r_cut=3.5, base_width=4, hidden=(8,), e_min=-2.0),
        _csnn_dos_inputs, None,
    ),
    "AtomwiseDOSMLP": (
        lambda: AtomwiseDOSMLP(20, r_cut=3.5, n_max=2, l_max=2, hidden=(8,), e_min=-2.0),
        _soap_dos_inputs, None,
    ),
    "PETDOS": (
        lambda: PETDOS(r_cut=3.0, n_energies=20, d_model=8, n_gnn_layers=1, n_trans_layers=1, n_heads=2,
                       dim_feedforward=16, head_hidden=8, n_features=6, hidden=(8,), e_min=-2.0),
        _carbon_inputs, None,
    ),
}


def _perturb_buffers(model):
    """Non-trivial values in the persistent buffers (batch-norm statistics, PET baselines)."""
    g = torch.Generator().manual_seed(7)
    for name, buf in model.named_buffers():
        if buf.is_floating_point() and name in model.state_dict():
            buf.copy_(buf + 0.1 * torch.rand(buf.shape, generator=g, dtype=buf.dtype))


def _model(name):
    torch.manual_seed(0)
    build, inputs, rebuild = CASES[name]
    model = build().double()
    with torch.no_grad():
        _perturb_buffers(model)
    return model.eval(), inputs(), rebuild


def _outputs(model, inputs):
    with torch.no_grad():
        out = model(*inputs)
    return out if isinstance(out, dict) else {"out": out}


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == torch.float64
        assert torch.equal(a[key], b[key]), key


def _rebuild(model, rebuild):
    hypers = json.loads(json.dumps(model.hypers))
    return rebuild(hypers, model) if rebuild is not None else type(model)(**hypers)


@pytest.mark.parametrize("name", list(CASES))
def test_hypers_rebuild_the_architecture(name):
    model, inputs, rebuild = _model(name)
    json.dumps(model.hypers)  # plain, JSON-serialisable
    fresh = _rebuild(model, rebuild).double()
    assert fresh.hypers == model.hypers
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    fresh.load_state_dict(model.state_dict())
    _assert_identical(_outputs(model, inputs), _outputs(fresh.eval(), inputs))


@pytest.mark.parametrize("name", list(CASES))
def test_save_from_checkpoint_round_trip(name, tmp_path):
    model, inputs, _ = _model(name)
    path = model.save(tmp_path / "sub" / "model.pt", meta={"note": "x", "epochs": 3})
    assert path == tmp_path / "sub" / "model.pt" and sorted(os.listdir(path.parent)) == ["model.pt"]
    payload = torch.load(path, weights_only=True)  # plain containers and tensors only
    assert payload["format"] == MODEL_FORMAT and payload["format_version"] == MODEL_FORMAT_VERSION
    assert payload["class"] == type(model).__name__ and payload["hypers"] == json.loads(json.dumps(model.hypers))
    assert payload["meta"] == {"note": "x", "epochs": 3} and payload["pointsym_version"]
    loaded = type(model).from_checkpoint(path)
    assert type(loaded) is type(model) and not loaded.training
    _assert_identical(_outputs(model, inputs), _outputs(loaded, inputs))
    anything = load_model(path)
    assert type(anything) is type(model)
    _assert_identical(_outputs(model, inputs), _outputs(anything, inputs))
    # saving again replaces the file atomically, leaving no temporary file behind
    model.save(path)
    assert sorted(os.listdir(path.parent)) == ["model.pt"]


def test_wrong_class_names_both(tmp_path):
    path = _tiny_pet().save(tmp_path / "pet.pt")
    with pytest.raises(CheckpointError, match=r"pet\.pt.*holds a PET, expected a CSNNClassifier"):
        CSNNClassifier.from_checkpoint(path)
    csnn = CSNNClassifier(level=0, n_shells=1, n_channels=1, n_classes=2, base_width=2, hidden=(4,))
    path = csnn.save(tmp_path / "csnn.pt")
    with pytest.raises(ValueError, match="holds a CSNNClassifier, expected a PET"):
        PET.from_checkpoint(path)
    with pytest.raises(ValueError, match="holds a CSNNClassifier, expected a ECSE"):
        ECSE.from_checkpoint(path)


def test_newer_format_version_says_so(tmp_path):
    path = _tiny_pet().save(tmp_path / "pet.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = MODEL_FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"pet\.pt.*format version 2, newer than this pointsym.*[Uu]pgrade"):
        PET.from_checkpoint(path)


@pytest.mark.parametrize("kind", ["truncated", "empty", "random", "text"])
@pytest.mark.parametrize("cls", [PET, NeSF, ECSE, PixelMLP])
def test_unreadable_files_are_a_clear_value_error(kind, cls, tmp_path):
    good = _tiny_pet().save(tmp_path / "good.pt").read_bytes()
    content = {"truncated": good[: len(good) // 2], "empty": b"", "random": os.urandom(512),
               "text": b"not a checkpoint\n"}[kind]
    path = tmp_path / f"{kind}.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"{kind}\.pt.*not a readable pointsym checkpoint") as info:
        cls.from_checkpoint(path)
    assert isinstance(info.value, CheckpointError)
    with pytest.raises(ValueError, match="not a readable pointsym checkpoint"):
        load_model(path)


def test_other_torch_files_and_missing_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"plain\.pt.*not a pointsym model file"):
        PointNet.from_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PET.from_checkpoint(tmp_path / "missing.pt")


def test_ecse_save_needs_a_contract_model(tmp_path):
    class Plain(torch.nn.Module):
        def forward(self, positions, numbers, cell=None, pbc=None, batch=None):
            return positions.sum().reshape(1)

    with pytest.raises(TypeError, match="model contract"):
        ECSE(Plain(), r_cut=3.0).save(tmp_path / "e.pt")
    assert not (tmp_path / "e.pt").exists()


# ---------------------------------------------------------------------------- legacy files
def _trainer_checkpoint(model, out_dir, spec):
    """Write a real Trainer checkpoint (one epoch that leaves the weights unchanged)."""
    from pointsym.training import TrainConfig, Trainer

    def loss_fn(m, batch):
        return sum((p * 0).sum() for p in m.parameters()), {}

    config = TrainConfig(epochs=1, batch_size=2, out_dir=str(out_dir), quiet=True, extra={"model": spec})
    Trainer(model, loss_fn, config).fit([torch.zeros(1)] * 2)
    return out_dir / "best.pt"


def test_pet_reads_pet_train_checkpoints(tmp_path):
    model, inputs, _ = _model("PET")
    ref = _outputs(model, inputs)
    path = _trainer_checkpoint(model, tmp_path / "run", {"class": "PET", "hypers": model.hypers})
    loaded = PET.from_checkpoint(path)
    assert not loaded.training and loaded.neighbor_embedding.weight.dtype == torch.float64
    _assert_identical(ref, _outputs(loaded, inputs))
    mlp = NeighborMLP(3.0, hidden=4, n_features=2)
    other = _trainer_checkpoint(mlp, tmp_path / "mlp", {"class": "NeighborMLP", "hypers": mlp.hypers})
    with pytest.raises(CheckpointError, match=r"best\.pt.*Trainer checkpoint of a NeighborMLP, expected a PET"):
        PET.from_checkpoint(other)
    assert isinstance(NeighborMLP.from_checkpoint(other), NeighborMLP)
    bare = _trainer_checkpoint(NeighborMLP(3.0, hidden=4, n_features=2), tmp_path / "bare", None)
    with pytest.raises(CheckpointError, match="not of a PET model"):
        PET.from_checkpoint(bare)


def _old_nesf_export(model, path, meta):
    """The layout save_nesf wrote before the pointsym-model format."""
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save({"format_version": 1, "kind": "nesf", "model": state,
                "config": {"extra": {"nesf": model.hypers}}, "meta": dict(meta)}, path)


def test_nesf_old_export_and_wrappers(tmp_path):
    model, inputs, _ = _model("NeSF")
    model = model.float()
    inputs = tuple(x.float() if x.is_floating_point() else x for x in inputs)
    ref = _outputs(model, inputs)
    _old_nesf_export(model, tmp_path / "old.pt", {"note": "old"})
    for loaded in (load_nesf(tmp_path / "old.pt")[0], NeSF.from_checkpoint(tmp_path / "old.pt")):
        assert not loaded.training and loaded.hypers == model.hypers
        out = _outputs(loaded, inputs)
        assert all(torch.equal(ref[k], out[k]) for k in ref)
    assert load_nesf(tmp_path / "old.pt")[1] == {"note": "old"}
    # save_nesf is a thin wrapper: a pointsym model file, weights in float32
    path = save_nesf(copy.deepcopy(model).double(), tmp_path / "new.pt", meta={"note": "new"})
    assert torch.load(path, weights_only=True)["format"] == MODEL_FORMAT
    loaded, info = load_nesf(path)
    assert info == {"note": "new"} and next(loaded.parameters()).dtype == torch.float32
    assert all(torch.equal(ref[k], _outputs(loaded, inputs)[k]) for k in ref)
    with pytest.raises(CheckpointError, match="holds a NeSF"):
        PET.from_checkpoint(tmp_path / "old.pt")


def test_nesf_config_is_a_deprecated_alias():
    model = CASES["NeSF"][0]()
    with pytest.warns(DeprecationWarning, match="hypers"):
        assert model.config() == model.hypers


@pytest.mark.skipif(not COMMITTED_NESF.is_file(), reason="committed NeSF checkpoint not present")
def test_committed_nesf_checkpoint_loads_identically():
    raw = torch.load(COMMITTED_NESF, map_location="cpu", weights_only=False)
    old = NeSF(**raw["config"]["extra"]["nesf"])  # the loading path before the model contract
    old.load_state_dict(raw["model"])
    old.eval()
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(6, 3, generator=g) * 4
    species = old.species_index(torch.tensor([8, 8, 22, 38, 8, 22]))
    args = (pos, species, torch.tensor([0, 0, 0, 1, 1, 1]), torch.full((2, 3), 3.9), torch.full((2, 3), 1.5708),
            torch.rand(10, 3, generator=g) * 4, torch.tensor([0] * 5 + [1] * 5))
    ref = _outputs(old, args)
    model, info = load_nesf(COMMITTED_NESF)
    assert info["data"] == "lim_l6"
    for loaded in (model, NeSF.from_checkpoint(COMMITTED_NESF)):
        out = _outputs(loaded, args)
        assert all(torch.equal(ref[k], out[k]) for k in ref)


def _fake_dataset(n_features):
    scaler = SimpleNamespace(center_=np.linspace(0, 1, n_features), scale_=np.linspace(1, 2, n_features))
    return SimpleNamespace(scaler=scaler, params=SimpleNamespace(as_dict=lambda: {"r_cut": 5.0, "n_max": 2}),
                           backend={"backend": "pointsym"}, meta={"source": "embedded"})


def test_pixel_soap_bundles_versioned_and_legacy(tmp_path):
    from pointsym.experiments.pixel_soap.cli import PIXEL_BUNDLE_VERSION, load_pixel_model, save_pixel_model

    model = PixelMLP(10, hidden=(8,), n_classes=3).eval()
    x = _rows(10)[0].float()
    ref = model(x)
    ds = _fake_dataset(10)
    path = save_pixel_model(tmp_path / "m.pt", model, ds, {"test_metrics": {"accuracy": 0.5}})
    assert torch.load(path, weights_only=True)["format_version"] == PIXEL_BUNDLE_VERSION
    bundle = load_pixel_model(path)
    assert bundle["format_version"] == PIXEL_BUNDLE_VERSION and bundle["test_metrics"] == {"accuracy": 0.5}
    assert torch.equal(bundle["model"](x), ref) and not bundle["model"].training
    np.testing.assert_array_equal(bundle["scaler"].center_, ds.scaler.center_)
    # version 1: written before versioning (numpy scaler arrays, weights in "model_state")
    torch.save({"format": "pointsym.pixel_soap/1", "model_config": model.hypers, "model_state": model.state_dict(),
                "scaler": {"center": ds.scaler.center_, "scale": ds.scaler.scale_}, "soap": ds.params.as_dict(),
                "backend": ds.backend, "data": ds.meta}, tmp_path / "v1.pt")
    old = load_pixel_model(tmp_path / "v1.pt")
    assert old["format_version"] == 1 and torch.equal(old["model"](x), ref)
    np.testing.assert_array_equal(old["scaler"].scale_, ds.scaler.scale_)
    newer = torch.load(path, weights_only=True)
    newer["format_version"] = PIXEL_BUNDLE_VERSION + 1
    torch.save(newer, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match=r"newer\.pt.*newer than this pointsym"):
        load_pixel_model(tmp_path / "newer.pt")
    (tmp_path / "broken.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match=r"broken\.pt.*not a readable pointsym checkpoint"):
        load_pixel_model(tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="pixel-SOAP bundle"):
        PixelMLP.from_checkpoint(tmp_path / "v1.pt")


def test_saved_model_file_has_ordinary_permissions(tmp_path):
    import os
    import stat

    from pointsym.symmetrize import NeighborMLP

    path = NeighborMLP(r_cut=3.0, hidden=4).save(tmp_path / "m.pt")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
