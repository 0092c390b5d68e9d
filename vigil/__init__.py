"""The ``vigil`` command line: one entry point over every part of the platform."""
