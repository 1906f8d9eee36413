"""The run: plan -> build or load -> train to each evaluation epoch -> extract -> evaluate
(:mod:`repeval.engine.runner`), the one training loop, the feature cache and the budget presets."""
