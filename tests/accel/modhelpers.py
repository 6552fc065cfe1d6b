"""Plain helpers that kernels in the tests call through their module
(``from . import modhelpers`` then ``modhelpers.clip01(x[i])``)."""


def clip01(v):
    if v < 0.0:
        return 0.0
    if v > 1.0:
        return 1.0
    return v


def put(out, k, v):
    out[k] = v
