"""The deployment build and tools: packaging, layer publishing, `make deploy`."""
