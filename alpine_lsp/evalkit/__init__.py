"""What training, evaluation and the benchmarks share: dataset readers, timing and memory
measurement, strict JSON output. It imports no LSP, engine or server code, and neither `train/`
nor `bench/` imports the other: both import this."""
