"""Batch jobs over a Ray cluster: the same task, model, contract and store as `loupe batch`, on many machines."""
