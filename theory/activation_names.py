"""The built-in activation names (sympy-free, so that numpy-only modules can check names).

The registry itself — each activation as a sympy expression, user expressions, the safe
string parser — is :mod:`theory.activations`.
"""

__all__ = ["ACTIVATIONS", "CLOSED_FORM_ACTIVATIONS", "is_user"]

#: built-in activations (their integer codes in the simulation kernel follow this order)
ACTIVATIONS = ("erf", "linear", "relu", "tanh", "sigmoid")
#: activations whose Gaussian averages I2, I3, I4, J2 have closed forms (docs/theory.md §4)
CLOSED_FORM_ACTIVATIONS = ("erf", "linear")


def is_user(name) -> bool:
    """Whether ``name`` is the canonical name of a user activation (``"user:<expr>"``,
    what :func:`theory.activations.get_activation` gives)."""
    return isinstance(name, str) and name.startswith("user:")
