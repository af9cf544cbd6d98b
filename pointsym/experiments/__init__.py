"""The papers' pipelines, one subpackage per system, each with its CLI, data, models and plots.

============  ===========================================================================
subpackage    what it holds
============  ===========================================================================
``common``    shared CLI option groups, progress bars, results JSON, plots, HTML report
``data``      ``pointsym data`` (data root and what is present) and the demo's data stage
``soap``      ``pointsym soap`` (SOAP features of structure files) and its demo stage
``pixel_soap``  paper 000: pixel-wise SOAP on MNIST (``pointsym pixel-soap``)
``csnn``      papers 001/003: concentric spherical networks (``pointsym csnn-shapes``)
``pet``       paper 002: PET and ECSE (``pointsym pet-train`` / ``pet-predict``)
``nesf``      paper 004: neural structure fields (``pointsym nesf-train`` / ``nesf-eval``)
``demo``      ``pointsym demo``: every pipeline on the embedded data, HTML report
============  ===========================================================================

Nothing outside ``pointsym.experiments`` (except :mod:`pointsym.cli`) imports from here.
"""
