"""Distilled sets leaving or entering the harness: `export` writes the harness's sets, `external`
reads and checks a set made elsewhere for `bench eval`."""
