"""The core: plain data (types, errors, Task), images, schemas and constrained decoding; imports nothing above it."""
