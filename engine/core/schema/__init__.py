"""JSON Schema handling: checking schemas, validating results, locating values in output text."""
