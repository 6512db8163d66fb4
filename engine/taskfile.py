"""The task-file loader: every section of a task file (schema, escalation, verdict, outputs) parsed once into objects."""
