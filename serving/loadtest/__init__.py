"""Load tests of the A/B endpoint: the locustfile and a headless runner."""
