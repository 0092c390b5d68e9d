"""The demo's HTML report: collect (store, MLflow, A/B report) → render (inline SVG, jinja2)
→ publish (MLflow artifact of the training run)."""
