"""The bottom layer of EVLF-Bench: what methods, evaluators and the runner all build on.

Registries and errors, command-line spec parsing and option conversion, content keys and the
artifact cache, data sets, and the records that cross module boundaries (run specs, result
rows, distilled sets, teachers). Nothing here imports another package of the project.
"""
