"""The Avro Java reference side of the interoperability tests (Java sources) and their shared helpers."""
