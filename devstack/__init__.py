"""Run the stack's real servers on this machine: `make up` and the test fixtures."""
