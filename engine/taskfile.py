"""The task-file loader: each section of a task file (schema, escalation, verdict, outputs) parsed once into objects."""
