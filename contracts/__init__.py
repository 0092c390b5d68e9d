"""What the parts of Vigil agree on: settings, storage layout, telemetry schema, features."""
