"""(being written)"""
__all__ = ["save", "load"]


def save(module, path):
    raise NotImplementedError


def load(module, path):
    raise NotImplementedError
