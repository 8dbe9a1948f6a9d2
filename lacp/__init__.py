"""LACP, the method itself (ICCV 2021, "Learning Action Completeness from Points").

Modules: the network and its losses, seed selection and the optimal sequence search used
in training, point labels, proposal generation from class activations (``proposals``),
ActivityNet-protocol detection metrics (``metrics``) and evaluation pictures (``plots``).
docs/METHOD.md describes what they compute; "METHOD n" and "METHOD.md section n" in the
docstrings are its section n. docs/ARCHITECTURE.md describes the interfaces.
"""
