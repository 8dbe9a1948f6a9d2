"""LACP, the method itself (ICCV 2021, "Learning Action Completeness from Points").

Modules: the network and its losses, seed selection and the optimal sequence search used
in training, point labels, proposal generation from class activations (``proposals``),
ActivityNet-protocol detection metrics (``metrics``) and evaluation pictures (``plots``).
See ../shared/METHOD.md for the specification and docs/ARCHITECTURE.md for the interfaces.
"""
