"""Grids: what a `bench run` runs, written as data in `grids/*.toml` and read here."""
