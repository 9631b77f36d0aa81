"""Jobs built on the platform: benchmarks, load generation, the ablation, and their plots.

The top of the stack below the CLI: a job may import any layer; no layer imports a job.
"""
