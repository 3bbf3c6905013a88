"""A method that always fails, loaded through BENCH_METHOD_MODULES by the end-to-end tests."""
from methods.base import Distiller
from methods.registry import register_method


@register_method("always-fails")
class AlwaysFails(Distiller):
    in_default_grid = False
    def distill(self, data, ipc, seed, ctx):
        raise RuntimeError("this method fails on purpose")
